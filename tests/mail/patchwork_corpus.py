"""Where the Patchwork mail corpus lives and how its files become RawMail, for the mail tests.

The corpus is test data shared by the projects on this machine (/work/shared/corpora), not part
of the repository: it is read in place, never copied. PATCHBOT_CORPORA overrides the folder
that holds `patchwork/`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from patchbot.sources import RawMail
from patchbot.sources.files import source_for

_DEFAULT_CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
CORPORA = Path(os.environ["PATCHBOT_CORPORA"]) if os.environ.get("PATCHBOT_CORPORA") else _DEFAULT_CORPORA
PATCHWORK = CORPORA / "patchwork"
EXPECTATIONS = PATCHWORK / "expectations.json"
AVAILABLE = EXPECTATIONS.is_file()
MISSING_REASON = f"the Patchwork mail corpus is not at {PATCHWORK} (set PATCHBOT_CORPORA to its parent folder)"

# An mbox separator line: "From " then anything (the fuzzed files carry "From pat016").
_FROM_LINE = re.compile(rb"^From [^\n]*\n")


def entries() -> list[dict]:
    """Every entry of expectations.json, or none when the corpus is absent."""
    if not AVAILABLE:
        return []
    return json.loads(EXPECTATIONS.read_text(encoding="utf-8"))


def corpus_files(folder: str) -> list[str]:
    """Relative names ("mail/0001-...") of the files of a corpus folder, sorted."""
    path = PATCHWORK / folder
    if not path.is_dir():
        return []
    return sorted(f"{folder}/{child.name}" for child in path.iterdir() if child.is_file())


def whole_file_mail(relative: str) -> RawMail:
    """A fuzz file as the ONE message it is: the bytes whole, minus a leading From_ line."""
    data = (PATCHWORK / relative).read_bytes()
    if data.startswith(b"From ") and (match := _FROM_LINE.match(data)):
        data = data[match.end():]
    return RawMail(data, relative)


def mails_of(relative: str) -> list[RawMail]:
    """The mails of a corpus file: fuzz/ files whole, the others as the CLI reads them."""
    if relative.startswith("fuzz/"):
        return [whole_file_mail(relative)]
    return list(source_for(str(PATCHWORK / relative)).mails())
