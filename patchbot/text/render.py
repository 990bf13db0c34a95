"""Fill in the text templates of templates/: every text a person reads comes from there."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from patchbot.text.safe_text import printable, without_line_breaks

# The package's templates folder (pyproject.toml says how templates/ gets there): the
# checkout's own in an editable install, the copy in site-packages in a wheel's. Jinja loads
# from a folder, which a pip install always unpacks to.
TEMPLATE_DIR = Path(files("patchbot") / "templates")

# The values of terminal templates (templates/cli/) that are text of many lines; every other
# value there is shown on the line the template gives it.
MULTI_LINE_VALUES = {
    "cli/suite-log.txt": frozenset({"text"}),
    "cli/demo-reply.txt": frozenset({"body"}),
}


class _Lines(str):
    """A value whose line breaks a terminal template keeps."""


def _shown(value):
    """Every value a mail template shows passes here: whatever a caller forgot to clean, no
    terminal escape sequence or control character reaches a reply (issue 11 item 8)."""
    return printable(value) if isinstance(value, str) else value


def _shown_on_a_terminal(value):
    """The same for templates/cli/, where a value also keeps to its line, so that a subject or a
    test name cannot print lines that pose as patchbot's (`status`, `series show`)."""
    if not isinstance(value, str):
        return value
    return printable(value) if isinstance(value, _Lines) else printable(without_line_breaks(value))


@cache
def _environment(terminal: bool):
    import jinja2  # only commands that print text pay for importing it

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,  # a misspelt value fails loudly, not as blank text
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_shown_on_a_terminal if terminal else _shown,
    )


def render(name: str, **values) -> str:
    terminal = name.startswith("cli/")
    for key in MULTI_LINE_VALUES.get(name, ()):
        values[key] = _Lines(values[key])
    return _environment(terminal).get_template(name).render(**values)
