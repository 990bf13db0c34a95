"""Fill in the text templates of templates/: every text a person reads comes from there."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from patchbot.safe_text import printable

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


def _shown(value):
    """Every value a template shows passes here: whatever a caller forgot to clean, no terminal
    escape sequence or control character reaches a reply, a terminal or a page (issue 11 item 8)."""
    return printable(value) if isinstance(value, str) else value


@cache
def _environment():
    import jinja2  # only commands that print text pay for importing it

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,  # a misspelt value fails loudly, not as blank text
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_shown,
    )


def render(name: str, **values) -> str:
    return _environment().get_template(name).render(**values)
