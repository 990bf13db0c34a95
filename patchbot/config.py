"""Read and validate the TOML configuration; every error names the key at fault."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The configuration is unusable; `key` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str, path: Path | None = None):
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")
        self.key = key


@dataclass(frozen=True)
class Config:
    db: Path | None = None  # None: the default under the user's data directory
    source: Path | None = None


# Each section's keys and the type each must have; anything else is a typo worth naming.
_SCHEMA: dict[str, dict[str, type]] = {
    "store": {"db": str},
}


def load_config(path: Path | None) -> Config:
    """The configuration in `path`, or the defaults when no file is given."""
    if path is None:
        return Config()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("", "no such file", path) from None
    except OSError as error:
        raise ConfigError("", f"cannot read it: {error.strerror}", path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError("", f"not valid TOML: {error}", path) from None
    _check_keys(data, path)
    store = data.get("store", {})
    db = Path(store["db"]).expanduser() if "db" in store else None
    if db is not None and not db.is_absolute():
        db = (Path(path).parent / db).resolve()  # relative to the config file, not the cwd
    return Config(db=db, source=Path(path))


def _check_keys(data: dict[str, Any], path: Path) -> None:
    for section, values in data.items():
        if section not in _SCHEMA:
            raise ConfigError(section, f"unknown section (known: {', '.join(sorted(_SCHEMA))})", path)
        if not isinstance(values, dict):
            raise ConfigError(section, "must be a table, e.g. [" + section + "]", path)
        for key, value in values.items():
            expected = _SCHEMA[section].get(key)
            if expected is None:
                known = ", ".join(sorted(_SCHEMA[section]))
                raise ConfigError(f"{section}.{key}", f"unknown key (known in [{section}]: {known})", path)
            if not isinstance(value, expected):
                raise ConfigError(f"{section}.{key}", f"must be a {expected.__name__}, not {type(value).__name__}", path)
