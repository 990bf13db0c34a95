"""One function per command of `patchbot`: open what it needs, call the stages, print."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from patchbot import PatchbotError
from patchbot.config.load import load_config
from patchbot.config.records import Config
from patchbot.store.connection import default_db_path
from patchbot.store.database import Store

log = logging.getLogger("patchbot")


EXIT_OK = 0
EXIT_FAILURE = 1  # the operation failed (store unusable, ...)
EXIT_USAGE = 2  # bad arguments (argparse's own code)
EXIT_UNREADABLE = 3  # a source given to `ingest` could not be read
EXIT_CONFIG = 4  # the configuration is invalid
EXIT_NOT_FOUND = 5  # no such series or message
EXIT_STORE_UNWRITABLE = 75  # the database cannot be written now (sysexits' EX_TEMPFAIL)


class NotFound(PatchbotError):
    pass


def open_store(args: argparse.Namespace) -> Store:
    return Store(db_path(args, load_config(args.config)))


def db_path(args: argparse.Namespace, config: Config) -> Path:
    return args.db or config.db or default_db_path()


def cmd_ingest(args: argparse.Namespace) -> int:
    from patchbot.series.intake import IngestSummary, ingest, keep_quiet_about
    from patchbot.cli.show import ingest_summary_text
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
    from patchbot.testing.sandbox import sandbox_available
    from patchbot.testing.errors import TestRunError
    from patchbot.testing.run import clean_up_after_crash, work_dir

    unavailable = sandbox_available()
    if unavailable and config.executor == "local":
        raise TestRunError(f"the sandbox cannot run here: {unavailable}")
    work = work_dir(config, database)
    if clean_up and clean_up_after_crash(config, work, repository_url):
        log.info("removed worktrees left by an earlier crash")
    return work


def cmd_test(args: argparse.Namespace) -> int:
    from patchbot.cli.show import test_run_text
    from patchbot.testing.run import secrets_of, test_series

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
    from patchbot.service.pipeline import run_pending
    from patchbot.cli.show import run_summary_text
    from patchbot.testing.run import secrets_of

    config = load_config(args.config)
    database = db_path(args, config)
    store = Store(database)
    counts = run_pending(store, config, prepare_testing(config, database), secrets_of(config, database))
    sys.stdout.write(run_summary_text(counts))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from patchbot.service.serve import serve, use_service_log_lines

    use_service_log_lines()
    config = load_config(args.config)
    database = db_path(args, config)
    Store(database).close()  # an unusable database stops the start, with its reason
    # The service cleans up once the repository answers: mail is taken in even while it does not.
    return serve(args.config, database, config, prepare_testing(config, database, clean_up=False))


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from patchbot.service.status import status_object, status_of, status_text

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
    from patchbot.text.render import render

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
    from patchbot.reply.outbox import requeue, send_due
    from patchbot.text.render import render

    config = load_config(args.config)
    store = Store(db_path(args, config))
    requeued = requeue(store, args.reply_ids or None)
    outcomes = send_due(store, config) if requeued.queued else []
    sys.stdout.write(render("cli/outbox-retry.txt", requeued=requeued, outcomes=outcomes))
    if requeued.unknown:
        raise NotFound(f"no reply {', '.join(map(str, requeued.unknown))} (see: patchbot outbox list)")
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    from patchbot.cli.show import log_text

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
    from patchbot.demo.run import run_demo  # the demo's SMTP server is not needed elsewhere

    from patchbot.text.render import render

    replies = run_demo(args.keep)
    for reply in replies:
        sys.stdout.write(reply)
    sys.stdout.write(render("cli/demo-end.txt", count=len(replies), keep=str(args.keep.resolve()) if args.keep else ""))
    return EXIT_OK


def cmd_series_list(args: argparse.Namespace) -> int:
    from patchbot.cli.show import series_list_text, series_object

    all_series = open_store(args).all_series()
    if args.json:
        _print_json([series_object(series) for series in all_series])
    else:
        sys.stdout.write(series_list_text(all_series))
    return EXIT_OK


def cmd_series_show(args: argparse.Namespace) -> int:
    from patchbot.cli.show import series_object, series_text, test_run_text

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
    from patchbot.text.render import render
    from patchbot.text.safe_text import one_line
    from patchbot.series.mbox import series_mbox, version_of

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
    from patchbot.cli.show import mail_object, mail_text

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
