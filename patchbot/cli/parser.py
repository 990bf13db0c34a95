"""The `patchbot` argument parser: every command, its options and help (b4's setup_parser)."""

from __future__ import annotations

import argparse
import logging
from importlib import metadata
from pathlib import Path

from patchbot.cli.actions import (
    EXIT_CONFIG, EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_OK, EXIT_STORE_UNWRITABLE, EXIT_UNREADABLE, EXIT_USAGE,
    cmd_cache_clear, cmd_demo, cmd_ingest, cmd_log, cmd_message_show, cmd_outbox_list, cmd_outbox_retry, cmd_requeue,
    cmd_run, cmd_series_list, cmd_series_mbox, cmd_series_show, cmd_serve, cmd_status, cmd_test,
)
from patchbot.store.connection import default_db_path

log = logging.getLogger("patchbot")


EPILOG = f"""\
exit codes:
  {EXIT_OK}  success
  {EXIT_FAILURE}  the operation failed (for example the database cannot be opened)
  {EXIT_USAGE}  the command line is wrong
  {EXIT_UNREADABLE}  ingest: a source could not be read (the others were still ingested)
  {EXIT_CONFIG}  the configuration file is invalid (the message names the key)
  {EXIT_NOT_FOUND}  no such series or message
  {EXIT_STORE_UNWRITABLE} the database cannot be written now (disk full, read-only, I/O error); serve
      exits so once it could not write for [serve] store_grace seconds, and systemd restarts it
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patchbot",
        description="Test the patches a mailing list receives and reply in the thread.\n\n"
        "patchbot keeps every mail it is given, assembles patch series and their versions,\n"
        "applies each series to the project's repository, runs the suites of the stacks it\n"
        "touches in a sandbox, and replies once per series version. Start with `patchbot demo`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # The installed distribution's version, the one pyproject.toml gives, not a copy of it.
    parser.add_argument("--version", action="version", version=f"patchbot {metadata.version('patchbot')}")
    _add_shared_options(parser)
    # The same options after a command too: `patchbot serve -c FILE`, as unit files say it.
    shared = argparse.ArgumentParser(add_help=False)
    _add_shared_options(shared, after_command=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    ingest_parser = commands.add_parser(
        "ingest", parents=[shared], help="store and file mails from mbox files, Maildirs, single mails or stdin",
        description="Store every mail found in the given paths once per Message-ID, classify it "
        "(patch, cover letter, pull request, reply, other, or rejected with a reason) and file "
        "patches into series. Each PATH is an mbox file, a Maildir folder, a single raw mail, "
        "or - for standard input; which one is detected. Ingesting a mail twice changes nothing.",
    )
    ingest_parser.add_argument("paths", nargs="+", metavar="PATH")
    ingest_parser.add_argument(
        "--backfill", action="store_true",
        help="the mails are the list's history (an archive export): file them so that later versions are "
        "recognised, but never test or answer their series, nor obey the commands in their replies",
    )
    ingest_parser.set_defaults(run=cmd_ingest)

    serve_parser = commands.add_parser(
        "serve", parents=[shared], help="run as a service: receive the list's mail and answer it as it arrives",
        description="Take mail from the sources in [sources] (an LMTP server for the MTA, a Maildir, an "
        "IMAP mailbox), store each mail before acknowledging it, and run the pipeline as mail arrives: "
        "file, handle commands, test at most [serve] workers series at once, reply. Runs until SIGTERM "
        "or SIGINT, which drain (no new mail or test; running tests get [serve] drain seconds; due "
        "replies are sent); SIGHUP reloads the configuration. Logs one line per event on stderr "
        "(with syslog priorities under systemd). A restart after a crash resumes the work the store "
        "holds: no mail is lost and no reply is sent twice.",
    )
    serve_parser.set_defaults(run=cmd_serve)

    status_parser = commands.add_parser(
        "status", parents=[shared], help="show the services, the test queue, the outbox and recent errors",
        description="What `patchbot serve` is doing, read from the database: each service and whether "
        "it lives, the tests running, waiting and waiting to retry (with their last error), the "
        "replies to send, and the newest warnings and errors the services logged.",
    )
    status_parser.add_argument("--json", action="store_true", help="print JSON")
    status_parser.set_defaults(run=cmd_status)

    outbox_parser = commands.add_parser(
        "outbox", parents=[shared], help="list the replies to send and send held or failed ones again",
        description="Every reply is stored before it is sent and sent once. A temporary failure (the relay "
        "down, a 4xx) is retried with backoff; past the retry window ([smtp] retry_base, max_attempts) the "
        "reply is held: `patchbot status` shows it and it is tried every hour until the relay takes it. A "
        "reply the relay refused for good (5xx) is failed and never tried by itself again.",
    )
    outbox_commands = outbox_parser.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    outbox_list = outbox_commands.add_parser("list", parents=[shared], help="the replies not sent yet (all with --all)")
    outbox_list.add_argument("--all", action="store_true", help="sent replies too")
    outbox_list.add_argument("--json", action="store_true", help="print JSON")
    outbox_list.set_defaults(run=cmd_outbox_list)
    outbox_retry = outbox_commands.add_parser(
        "retry", parents=[shared], help="send held and failed replies now (these, or every one)",
        description="Queue the held and failed replies with the given ids (see `patchbot outbox list`), or "
        "every one, with a fresh retry window, and send what is due now. A sent reply is never sent again.",
    )
    outbox_retry.add_argument("reply_ids", nargs="*", type=int, metavar="ID")
    outbox_retry.set_defaults(run=cmd_outbox_retry)

    requeue_parser = commands.add_parser(
        "requeue", parents=[shared], help="retry mails set aside because their handling raised",
        description="A mail whose handling raised (a bug of patchbot's, or a mail it cannot cope with) is "
        "set aside with its error, and the service goes on; `patchbot status` lists such mails. Once the "
        "cause is fixed, requeue puts them back: a mail never filed is filed again, a reply is read for "
        "commands again. A command mail that failed after it was claimed is not acted on a second time: "
        "its acknowledgement says it was interrupted, as after a crash. Mails that failed for the "
        "machine's reasons (a full or read-only disk) are never set aside: they are retried by themselves.",
    )
    requeue_parser.add_argument("mail_ids", nargs="*", metavar="MAIL_ID",
                                help="a mail's id as `patchbot status` shows it, or its Message-ID")
    requeue_parser.add_argument("--all", action="store_true", help="every mail set aside")
    requeue_parser.set_defaults(run=cmd_requeue)

    cache_parser = commands.add_parser(
        "cache", parents=[shared], help="forget kept base results",
        description="A base's results are kept per base commit, suite definition and environment key (its "
        "inputs' hash), so a changed suite or environment runs the base again by itself; `cache clear` "
        "forgets them anyway (a base that was flaky, a machine that changed).")
    cache_commands = cache_parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    cache_clear = cache_commands.add_parser("clear", parents=[shared], help="forget kept base results")
    cache_clear.add_argument("--base", metavar="COMMIT", help="only those of this base commit (an id or a prefix)")
    cache_clear.add_argument("--suite", metavar="NAME", help="only those of this suite")
    cache_clear.set_defaults(run=cmd_cache_clear)

    series_parser = commands.add_parser(
        "series", parents=[shared], help="list, show and export patch series",
        description="A series is one version of a set of patches (with its cover letter, if "
        "any). A re-roll is a new series that supersedes the previous version, which becomes "
        "obsolete.",
    )
    series_commands = series_parser.add_subparsers(dest="series_command", metavar="ACTION", required=True)
    series_list = series_commands.add_parser("list", parents=[shared], help="list every series")
    series_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    series_list.set_defaults(run=cmd_series_list)
    series_show = series_commands.add_parser("show", parents=[shared], help="show one series and its patches")
    series_show.add_argument("series_id", type=int, metavar="ID")
    series_show.add_argument("--json", action="store_true", help="print JSON")
    series_show.set_defaults(run=cmd_series_show)
    series_mbox = series_commands.add_parser(
        "mbox", parents=[shared], help="write a series as an mbox that git am applies, with its review trailers",
        description="Write the series' patches in order (no cover letter) as an mboxrd file, each with "
        "the Reviewed-by, Acked-by and Tested-by trailers its thread gave (as `patchbot: apply` adds "
        "them). Apply it with `git am --patch-format=mboxrd`, which undoes the quoting of From lines.")
    series_mbox.add_argument("series_id", type=int, metavar="ID")
    series_mbox.add_argument("--version", type=int, metavar="N", help="version N of that series instead")
    series_mbox.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    series_mbox.set_defaults(run=cmd_series_mbox)

    test_parser = commands.add_parser(
        "test", parents=[shared], help="apply a stored series and run the suites of the stacks it touches",
        description="Apply the series (cover letter left out) on its base in a fresh worktree of the "
        "repository's mirror, run the suites of every stack it touches in a sandbox, run the same "
        "suites on the base (once per base commit), and report new and pre-existing failures. "
        "The base is, in order: --base, Based-on:, base-commit:, a subject tag mapped in "
        "[repository.tag_branches], the default branch. The result is stored (see series show).",
    )
    test_parser.add_argument("series_id", type=int, metavar="SERIES_ID")
    test_parser.add_argument("--base", metavar="REF", help="test on this branch, tag or commit instead")
    test_parser.add_argument("--repo", metavar="PATH", help="the repository (URL or path), instead of [repository] url")
    test_parser.add_argument("--json", action="store_true", help="print JSON")
    test_parser.set_defaults(run=cmd_test)

    run_parser = commands.add_parser(
        "run", parents=[shared], help="process everything pending once, then exit (for cron and tests)",
        description="One pass of the whole pipeline: file mails not yet filed, ask for a test of "
        "every complete current series not yet tested, test them, keep one reply per series "
        "version in the outbox, and send what is due (or write it to [smtp] dry_run_mbox).",
    )
    run_parser.set_defaults(run=cmd_run)

    log_parser = commands.add_parser("log", parents=[shared], help="print the whole output of a test run's suites",
                                     description="Print the logs of test run RUN_ID (replies name it). A log is "
                                     "written by the tests of a patch: terminal escape sequences in it are dropped and "
                                     "other control characters shown escaped (\\x1b), on a terminal or not.")
    log_parser.add_argument("run_id", type=int, metavar="RUN_ID")
    log_parser.add_argument("suite", nargs="?", metavar="SUITE", help="only this suite")
    log_parser.add_argument("--raw", action="store_true",
                            help="write the logs' bytes unchanged and without headers, for a file "
                            "(patchbot log 42 python --raw > python.log); never to a terminal")
    log_parser.set_defaults(run=cmd_log)

    demo_parser = commands.add_parser(
        "demo", parents=[shared], help="run the whole pipeline on the sample aur-dev mails and show the replies",
        description="Build the sample dual-stack project in a temporary folder, start an SMTP "
        "server on 127.0.0.1 that captures what patchbot sends, feed the sample aur-dev mailbox "
        "(fixtures/mails/), run the pipeline and print every reply as a person would read it.",
    )
    demo_parser.add_argument("--keep", metavar="DIR", type=Path, help="work in DIR and keep it, instead of a temporary folder")
    demo_parser.set_defaults(run=cmd_demo)

    message_parser = commands.add_parser("message", parents=[shared], help="show what patchbot made of one mail")
    message_commands = message_parser.add_subparsers(dest="message_command", metavar="ACTION", required=True)
    message_show = message_commands.add_parser(
        "show", parents=[shared], help="show one mail's kind, position, files and trailers",
        description="Show one stored mail by its Message-ID (with or without the angle brackets).",
    )
    message_show.add_argument("message_id", metavar="MESSAGE_ID")
    message_show.add_argument("--json", action="store_true", help="print JSON")
    message_show.set_defaults(run=cmd_message_show)
    return parser


def _add_shared_options(parser: argparse.ArgumentParser, after_command: bool = False) -> None:
    """-c, --db, -v, -q; after a command they leave alone what was given before it."""
    unset = {"default": argparse.SUPPRESS} if after_command else {}
    parser.add_argument("-c", "--config", type=Path, metavar="PATH", help="the TOML configuration file", **unset)
    parser.add_argument(
        "--db", type=Path, metavar="PATH",
        help=f"the SQLite database (default: [store] db of the config, else {default_db_path()})", **unset,
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log every step", **unset)
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only", **unset)
