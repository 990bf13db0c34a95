"""The `patchbot` command line: parse arguments, call the stages, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from patchbot import PatchbotError
from patchbot.config import Config, ConfigError, git_location, load_config
from patchbot.store import Store, default_db_path, is_machine_fault

# Each command imports the stages it drives: `patchbot test` need not load the SMTP client,
# nor `patchbot series list` the sandbox.

log = logging.getLogger("patchbot")

EXIT_OK = 0
EXIT_FAILURE = 1  # the operation failed (store unusable, ...)
EXIT_USAGE = 2  # bad arguments (argparse's own code)
EXIT_UNREADABLE = 3  # a source given to `ingest` could not be read
EXIT_CONFIG = 4  # the configuration is invalid
EXIT_NOT_FOUND = 5  # no such series or message
EXIT_STORE_UNWRITABLE = 75  # the database cannot be written now (sysexits' EX_TEMPFAIL)

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


class NotFound(PatchbotError):
    pass


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


def open_store(args: argparse.Namespace) -> Store:
    return Store(db_path(args, load_config(args.config)))


def db_path(args: argparse.Namespace, config: Config) -> Path:
    return args.db or config.db or default_db_path()


def cmd_ingest(args: argparse.Namespace) -> int:
    from patchbot.intake import IngestSummary, ingest, keep_quiet_about
    from patchbot.show import ingest_summary_text
    from patchbot.sources.files import source_for

    store = open_store(args)
    summary = IngestSummary()
    for path in args.paths:
        source = source_for(path)
        log.debug("ingest: reading %s", source.name)
        ingest(store, source, summary, _progress_printer(source.name, summary))
    if args.backfill:
        log.info("ingest: back-filled: %d series kept as history, never answered", keep_quiet_about(store, summary.filed))
    sys.stdout.write(ingest_summary_text(summary))
    for problem in summary.unreadable:
        log.error("ingest: could not read %s", problem)
    return EXIT_UNREADABLE if summary.unreadable else EXIT_OK


def _progress_printer(name: str, summary) -> Callable[[], None]:
    """Report progress on stderr at most every two seconds, so long back-fills show life."""
    started = last = time.monotonic()
    start_total = summary.total

    def report() -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 2:
            read = summary.total - start_total
            log.info("ingest: %s: %d mails read (%d new so far), %.0f mails/s", name, read, summary.new, read / (now - started))
            last = now

    return report


def prepare_testing(config: Config, database: Path, repository_url: str | None = None, clean_up: bool = True) -> Path:
    """Check the sandbox and (unless the caller does it later) clean up after a crash;
    returns the work folder."""
    from patchbot.sandbox import sandbox_available
    from patchbot.testrun import TestRunError, clean_up_after_crash, work_dir

    unavailable = sandbox_available()
    if unavailable and config.executor == "local":
        raise TestRunError(f"the sandbox cannot run here: {unavailable}")
    work = work_dir(config, database)
    if clean_up and clean_up_after_crash(config, work, repository_url):
        log.info("removed worktrees left by an earlier crash")
    return work


def cmd_test(args: argparse.Namespace) -> int:
    from patchbot.show import test_run_text
    from patchbot.testrun import secrets_of, test_series

    config = load_config(args.config)
    database = db_path(args, config)
    store = Store(database)
    work = prepare_testing(config, database, args.repo)
    log.info("test: series %d", args.series_id)
    run = test_series(store, config, args.series_id, work=work, hidden=secrets_of(config, database),
                      base_ref=args.base, repository_url=args.repo)
    summary = run.summary()
    if args.json:
        _print_json(summary)
    else:
        sys.stdout.write(test_run_text(summary))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from patchbot.pipeline import run_pending
    from patchbot.show import run_summary_text
    from patchbot.testrun import secrets_of

    config = load_config(args.config)
    database = db_path(args, config)
    store = Store(database)
    counts = run_pending(store, config, prepare_testing(config, database), secrets_of(config, database))
    sys.stdout.write(run_summary_text(counts))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from patchbot.serve import serve, use_service_log_lines

    use_service_log_lines()
    config = load_config(args.config)
    database = db_path(args, config)
    Store(database).close()  # an unusable database stops the start, with its reason
    # The service cleans up once the repository answers: mail is taken in even while it does not.
    return serve(args.config, database, config, prepare_testing(config, database, clean_up=False))


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from patchbot.status import status_object, status_of, status_text

    status = status_of(open_store(args), datetime.now(timezone.utc))
    if args.json:
        _print_json(status_object(status))
    else:
        sys.stdout.write(status_text(status))
    return EXIT_OK


def cmd_requeue(args: argparse.Namespace) -> int:
    if bool(args.mail_ids) == args.all:
        log.error("requeue: give the ids of mails set aside (see patchbot status), or --all")
        return EXIT_USAGE
    store = open_store(args)
    mail_ids = None
    if not args.all:
        mail_ids = []
        for given in args.mail_ids:
            mail = store.mail(given if given.startswith("<") else f"<{given}>") if not given.isdigit() else None
            if not given.isdigit() and mail is None:
                raise NotFound(f"no mail {given} is stored")
            mail_ids.append(int(given) if given.isdigit() else mail.id)
    requeued = store.requeue_mails(mail_ids)
    for mail_id in mail_ids or []:
        if mail_id not in requeued:
            log.warning("requeue: mail %d is not set aside: left as it is", mail_id)
    sys.stdout.write(f"{len(requeued)} mail{'s' if len(requeued) != 1 else ''} put back: {' '.join(map(str, requeued)) or '-'}\n")
    return EXIT_OK if requeued or args.all else EXIT_NOT_FOUND


def cmd_cache_clear(args: argparse.Namespace) -> int:
    store = open_store(args)
    with store.transaction():
        cleared = store.clear_base_results(args.base, args.suite)
    sys.stdout.write(f"{cleared} kept base result{'s' if cleared != 1 else ''} cleared\n")
    return EXIT_OK


def cmd_outbox_list(args: argparse.Namespace) -> int:
    from patchbot.render import render

    replies = [item for item in open_store(args).replies() if args.all or item.status != "sent"]
    shown = [{"id": item.id, "key": item.key, "status": item.status, "attempts": item.attempts,
              "message_id": item.message_id, "recipients": list(item.recipients), "last_error": item.last_error,
              "created_at": item.created_at.isoformat() if item.created_at else None,
              "next_attempt_at": item.next_attempt_at.isoformat() if item.next_attempt_at else None}
             for item in replies]
    if args.json:
        _print_json(shown)
    else:
        sys.stdout.write(render("cli/outbox-list.txt", replies=shown, all=args.all))
    return EXIT_OK


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    from patchbot.outbox import requeue, send_due
    from patchbot.render import render

    config = load_config(args.config)
    store = Store(db_path(args, config))
    requeued = requeue(store, args.reply_ids or None)
    outcomes = send_due(store, config) if requeued.queued else []
    sys.stdout.write(render("cli/outbox-retry.txt", requeued=requeued, outcomes=outcomes))
    if requeued.unknown:
        raise NotFound(f"no reply {', '.join(map(str, requeued.unknown))} (see: patchbot outbox list)")
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    from patchbot.show import log_text

    run = open_store(args).test_run(args.run_id)
    if run is None:
        raise NotFound(f"no test run {args.run_id}")
    suites = [suite for suite in run.summary["suites"] if args.suite in (None, suite["name"])]
    if not suites:
        raise NotFound(f"test run {args.run_id} has no suite {args.suite}")
    if args.raw and sys.stdout.isatty():
        log.error("log --raw writes a log's control characters unchanged: redirect it to a file or a pipe")
        return EXIT_USAGE
    for suite in suites:
        path = Path(suite["log"]) if suite["log"] else None
        if args.raw:
            sys.stdout.flush()
            sys.stdout.buffer.write(path.read_bytes() if path and path.is_file() else b"")
            continue
        # Bytes decoded here, not read_text: its universal newlines would hide a CR that writes over a line.
        text = path.read_bytes().decode(errors="replace") if path and path.is_file() else "(the log is gone: the work folder was cleaned)\n"
        sys.stdout.write(log_text(args.run_id, suite, text))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from patchbot.demo import run_demo  # the demo's SMTP server is not needed elsewhere

    from patchbot.render import render

    replies = run_demo(args.keep)
    for reply in replies:
        sys.stdout.write(reply)
    sys.stdout.write(render("cli/demo-end.txt", count=len(replies), keep=str(args.keep.resolve()) if args.keep else ""))
    return EXIT_OK


def cmd_series_list(args: argparse.Namespace) -> int:
    from patchbot.show import series_list_text, series_object

    all_series = open_store(args).all_series()
    if args.json:
        _print_json([series_object(series) for series in all_series])
    else:
        sys.stdout.write(series_list_text(all_series))
    return EXIT_OK


def cmd_series_show(args: argparse.Namespace) -> int:
    from patchbot.show import series_object, series_text, test_run_text

    store = open_store(args)
    series = store.series(args.series_id)
    if series is None:
        raise NotFound(f"no series {args.series_id} (see: patchbot series list)")
    latest = store.latest_test_run(series.id)
    if args.json:
        _print_json({**series_object(series), "last_test": latest.summary if latest else None})
    else:
        sys.stdout.write(series_text(series))
        if latest:
            sys.stdout.write("---\nLast test, " + latest.finished_at.isoformat() + ":\n" + test_run_text(latest.summary))
    return EXIT_OK


def cmd_series_mbox(args: argparse.Namespace) -> int:
    from patchbot.render import render
    from patchbot.safe_text import one_line
    from patchbot.series_mbox import series_mbox, version_of

    config = load_config(args.config)
    store = Store(db_path(args, config))
    series = store.series(args.series_id)
    if series is None:
        raise NotFound(f"no series {args.series_id} (see: patchbot series list)")
    if args.version is not None and (series := version_of(store, series, args.version)) is None:
        raise NotFound(f"series {args.series_id} has no version {args.version} (see: patchbot series list)")
    written = series_mbox(store, config, series)
    if args.output is None:
        sys.stdout.buffer.write(written.data)
        sys.stdout.flush()
    else:
        args.output.write_bytes(written.data)
    sys.stderr.write(render("cli/series-mbox.txt", id=series.id, version=series.version, title=one_line(series.title),
                            patches=len(written.patches), missing=", ".join(map(str, written.missing)),
                            trailers=written.trailers, untouched=", ".join(map(str, written.untouched)),
                            target=args.output or "FILE"))
    return EXIT_OK


def cmd_message_show(args: argparse.Namespace) -> int:
    from patchbot.show import mail_object, mail_text

    message_id = args.message_id.strip()
    if not message_id.startswith("<"):
        message_id = f"<{message_id}>"
    mail = open_store(args).mail(message_id)
    if mail is None:
        raise NotFound(f"no mail {message_id} is stored")
    if args.json:
        _print_json(mail_object(mail))
    else:
        sys.stdout.write(mail_text(mail))
    return EXIT_OK


def _print_json(value) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


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
