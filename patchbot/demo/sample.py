"""The embedded default: the sample dual-stack project and a configuration that tests it.

    python -m patchbot.demo.sample DIR   builds the project's repository in DIR/aurweb and writes
                                    DIR/patchbot.toml (database and work files under DIR)
"""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

from patchbot import PatchbotError

# The package's fixtures folder (pyproject.toml says how fixtures/ gets there): the checkout's
# own in an editable install, the copy in site-packages in a wheel's.
FIXTURES = Path(files("patchbot") / "fixtures")
MAKE_REPO = FIXTURES / "sample-project" / "make-repo"
CONFIG_TEMPLATE = FIXTURES / "sample-config.toml"
SAMPLE_MAILS = FIXTURES / "mails" / "aur-dev-sample.mbox"


def build_sample_repo(target: Path) -> Path:
    """The sample project's git repository (five commits of history, fixed ids) in `target`."""
    # Run by its interpreter, not its mode bit: an installed copy need not keep the bit.
    subprocess.run(["bash", str(MAKE_REPO), str(target)], check=True, capture_output=True)
    return target


def write_sample_config(path: Path, repo: Path, work: Path, db: Path, smtp_port: int = 25) -> Path:
    """A config testing `repo` with this interpreter's Python (which has pytest) in the sandbox,
    replying to aur-dev through the SMTP server on 127.0.0.1:`smtp_port`."""
    if find_spec("pytest") is None:
        # Without it the Python suite runs nothing on the patch and on the base alike, and the
        # replies would show a test run that never happened.
        raise PatchbotError(
            f"the sample project's Python suite runs with pytest from {sys.executable}, which has "
            "none: install it there (pip install pytest)"
        )
    text = CONFIG_TEMPLATE.read_text().format(
        db=db, work=work, repo=repo, smtp_port=smtp_port, python_bin=Path(sys.executable).parent,
        python_prefix=Path(sys.base_prefix).resolve(), venv=Path(sys.prefix),
    )
    path.write_text(text)
    return path


if __name__ == "__main__":
    folder = Path(sys.argv[1]).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    repo = build_sample_repo(folder / "aurweb")
    print(write_sample_config(folder / "patchbot.toml", repo, folder / "work", folder / "patchbot.db"))
