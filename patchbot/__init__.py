"""patchbot: test the patches a mailing list receives and reply in the thread.

The package reads as its pipeline, each stage a module that takes one typed record and
returns the next:

    sources/   files, LMTP, Maildir, IMAP      -> RawMail
    mail/      RawMail bytes                   -> ParsedMail (headers, subject, diff, kind)
    series.py  ParsedMail + what is stored     -> Filing (series, version, completeness)
    intake.py  RawMail -> store -> parse -> file into a series, once per Message-ID

`store.py` alone speaks SQL; `cli.py` only parses arguments and maps errors to exit codes.
"""

__version__ = "0.1.0"


class PatchbotError(Exception):
    """A failure to report to the user in one sentence (the command line maps it to an exit code)."""
