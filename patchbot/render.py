"""Fill in the text templates of templates/: every text a person reads comes from there."""

from __future__ import annotations

from functools import cache
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"


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
    )


def render(name: str, **values) -> str:
    return _environment().get_template(name).render(**values)
