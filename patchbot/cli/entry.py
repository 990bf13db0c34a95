"""`patchbot`'s entry point: parse, run the command, map errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from pathlib import Path

from patchbot import PatchbotError
from patchbot.cli.actions import EXIT_CONFIG, EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_OK, EXIT_STORE_UNWRITABLE, NotFound
from patchbot.cli.parser import build_parser
from patchbot.config.load import git_location
from patchbot.config.records import ConfigError
from patchbot.store.connection import is_machine_fault

log = logging.getLogger("patchbot")


def anchor_paths(args: argparse.Namespace) -> argparse.Namespace:
    """Make the paths given on the command line absolute, against the folder patchbot was started
    in: later steps run git in other folders, and a relative --db once put the work folder
    ("<db folder>/work") relative to wherever git ran ("not a git repository", blamed on the patch)."""
    for name in ("db", "config", "keep", "output"):
        if isinstance(value := getattr(args, name, None), Path):
            setattr(args, name, Path.cwd() / value.expanduser())
    if getattr(args, "repo", None):
        args.repo = git_location(args.repo, Path.cwd())
    return args


def main(argv: list[str] | None = None) -> int:
    args = anchor_paths(build_parser().parse_args(argv))
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="patchbot: %(message)s", stream=sys.stderr)
    try:
        return args.run(args)
    except ConfigError as error:
        log.error("configuration: %s", error)
        return EXIT_CONFIG
    except NotFound as error:
        log.error("%s", error)
        return EXIT_NOT_FOUND
    except PatchbotError as error:  # the store, git, a test run: one sentence, no traceback
        log.error("%s", error)
        return EXIT_FAILURE
    except BrokenPipeError:
        return EXIT_OK  # `patchbot series list | head`: the reader left, nothing went wrong
    except (sqlite3.Error, OSError) as error:
        if not is_machine_fault(error):
            raise
        log.error("the database or the disk cannot be written now: %s: %s", type(error).__name__, error)
        return EXIT_STORE_UNWRITABLE
