"""No input takes intake down: every mail is filed or rejected with a reason, exactly once.

First the corpus' real and fuzzed mails, one test each; then Hypothesis mutates real mails
(flipped, truncated and inserted bytes, lost or doubled header lines, garbage header values,
odd charsets, broken base64) and feeds plain random bytes. parse_mail may only return a
ParsedMail or raise MailRejected; take_in may never raise and never record our own failure.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import tempfile
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from patchbot.cli.entry import main as patchbot_main
from patchbot.series.intake import Status, take_in
from patchbot.mail import MailRejected, ParsedMail, message_id_for, parse_mail
from patchbot.cli.show import mail_object
from patchbot.sources import RawMail
from patchbot.store.database import Store
from patchwork_corpus import MISSING_REASON, corpus_files, mails_of

# Stores made per example live in RAM where we can: SQLite's fsyncs would dominate the run.
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
TABLES = ("mails", "series", "series_patches", "thread_refs")


def table_rows(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table, read through a connection of our own."""
    with sqlite3.connect(db) as connection:
        return {table: connection.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall() for table in TABLES}


def rows_for(db: Path, message_id: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT status, reason, kind FROM mails WHERE message_id = ?", (message_id,)
        ).fetchall()


# -- the corpus, file by file -------------------------------------------------------------

CORPUS_FILES = corpus_files("mail") + corpus_files("fuzz")


@pytest.mark.skipif(not CORPUS_FILES, reason=MISSING_REASON)
@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_file_is_filed_or_rejected_once(name, tmp_path):
    db = tmp_path / "patchbot.db"
    store = Store(db)
    try:
        raws = mails_of(name)
        assert raws, f"{name} yielded no mail"
        outcomes = [take_in(store, raw) for raw in raws]
        for outcome in outcomes:
            assert outcome.status in (Status.FILED, Status.REJECTED), f"{name}: {outcome}"
            record = store.mail(outcome.message_id)
            if outcome.status is Status.REJECTED:
                assert outcome.reason and record.reason, f"{name}: rejected without a reason"
                assert record.status == "rejected"
            else:
                assert record.status == "filed" and record.facts is not None
            # What the CLI prints must survive being written out as UTF-8.
            json.dumps(mail_object(record), ensure_ascii=False).encode("utf-8")
        before = table_rows(db)
        again = [take_in(store, raw) for raw in raws]
        assert [outcome.status for outcome in again] == [Status.KNOWN] * len(raws)
        assert [outcome.message_id for outcome in again] == [outcome.message_id for outcome in outcomes]
        assert table_rows(db) == before
    finally:
        store.close()


# -- mutated mails and random bytes ---------------------------------------------------------


def _fallback_seeds() -> list[bytes]:
    """Two mails built here, so the property tests still run without the corpus."""
    patch = EmailMessage()
    patch["From"] = "Jane Doe <jane@example.org>"
    patch["To"] = "aur-dev@lists.archlinux.org"
    patch["Subject"] = "[PATCH v2 1/2] rpc: return an error for unknown types"
    patch["Date"] = "Mon, 01 Mar 2021 12:00:00 +0000"
    patch["Message-Id"] = "<fallback.1@example.org>"
    patch.set_content(
        "The RPC answered 200 with an empty result.\n\n"
        "Signed-off-by: Jane Doe <jane@example.org>\n---\n"
        " web/html/rpc.php | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)\n\n"
        "diff --git a/web/html/rpc.php b/web/html/rpc.php\nindex 1111111..2222222 100644\n"
        "--- a/web/html/rpc.php\n+++ b/web/html/rpc.php\n@@ -1,3 +1,3 @@\n <?php\n"
        "-$type = $_GET['type'];\n+$type = $_GET['type'] ?? 'error';\n echo json_encode([]);\n"
        "-- \n2.39.5\n"
    )
    reply = EmailMessage()
    reply["From"] = "Jörg Müller via aur-dev <aur-dev@lists.archlinux.org>"
    reply["Reply-To"] = "Jörg Müller <joerg@example.org>"
    reply["List-Post"] = "<mailto:aur-dev@lists.archlinux.org>"
    reply["Subject"] = "Re: [PATCH v2 1/2] rpc: return an error for unknown types"
    reply["Message-Id"] = "<fallback.2@example.org>"
    reply["In-Reply-To"] = "<fallback.1@example.org>"
    reply["References"] = "<fallback.0@example.org> <fallback.1@example.org>"
    reply.set_content("> The RPC answered 200.\n\nGrüße, looks fine.\n\nReviewed-by: Jörg <joerg@example.org>\n", charset="utf-8")
    return [patch.as_bytes(), reply.as_bytes()]


def _seeds() -> list[bytes]:
    seeds = [raw.data for name in corpus_files("mail") for raw in mails_of(name)]
    return seeds or _fallback_seeds()


SEEDS = _seeds()

CHARSETS = st.one_of(
    st.sampled_from([
        "utf-8", "us-ascii", "iso-8859-1", "windows-1252", "iso-8859-2", "koi8-r", "shift_jis",
        "gb2312", "big5", "utf-16", "utf-32", "none", "x-unknown", "unknown-8bit", "utf\x00-8",
        "", '"', "idna", "undefined", "rot13", "hex", "base64", "zlib", "bz2", "uu", "mbcs",
        "utf-8''%E2", "=?utf-8?q?x?=",
        # Codecs that turn bytes into lone surrogates, which SQLite and stdout refuse.
        "utf-7", "punycode", "unicode-escape", "raw-unicode-escape",
    ]),
    st.text(max_size=12),
)
CHUNKS = st.one_of(
    st.binary(min_size=1, max_size=24),
    st.sampled_from([
        b"\x00", b"\r", b"\r\n", b"\n", b"\n\n", b"\xff", b"\xc3", b"\xe2\x82", b"\x80\x80\x80",
        b"\xed\xa0\x80", b"=?", b"?=", b"\n ", b"\t", b"<", b">", b"[", b"]", b"\x1b", b"\x7f",
    ]),
)
HEADER_NAMES = st.sampled_from([
    "From", "Subject", "Message-Id", "In-Reply-To", "References", "Date", "Content-Type",
    "Content-Transfer-Encoding", "List-Post", "List-Id", "Reply-To", "Cc", "X-Original-From",
    "Auto-Submitted", "MIME-Version",
])
GARBAGE_VALUES = st.one_of(
    st.binary(max_size=60).map(lambda value: value.replace(b"\n", b" ")),
    st.sampled_from([
        b"", b" ", b"<", b"<>", b"<<a@b>>", b"\x00\x00<1m>", b"=?utf-8?b?!!!?=", b"=?x?q?=ZZ?=",
        b"=?utf-8?q?Rafa=C5?= =?utf-8?q?=82?=", b"Mon, 99 Foo 99999 99:99:99 +9999",
        b"Fri, 31 Dec 9999 23:59:59 -1400", b"Mon, 01 Mar 0000 00:00:00 +0000",
        b"multipart/mixed; boundary=", b"multipart/mixed", b"text/plain; charset=",
        b"base64", b"quoted-printable", b"x-uuencode", b"Jane via aur-dev <aur-dev@lists.archlinux.org>",
        b"\"unterminated <a@b>", b"a@b, , ,,<c@d>", b"(((((", b"\xff\xfe\xfd",
        b"[PATCH v0 0/0]", b"[PATCH v999999 999999/999999] x",
        b"[PATCH 99999999999999999999/99999999999999999999] x", b"[PATCH v99999999999999999999] x",
        b"=?utf-7?q?+2AA-?=", b"=?punycode?q?ib9b?=", b"Re: " * 50,
        b"<" + b"a" * 2000 + b"@b>", b"x" * 5000,
    ]),
)
BASE64_GARBAGE = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\n!-", max_size=200)


def _split_head(data: bytes) -> tuple[list[bytes], bytes]:
    head, separator, body = data.partition(b"\n\n")
    return head.split(b"\n"), (separator + body)


def _join_head(lines: list[bytes], rest: bytes) -> bytes:
    return b"\n".join(lines) + rest


def _without_header(lines: list[bytes], name: str) -> list[bytes]:
    kept, skipping = [], False
    for line in lines:
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().startswith(name.lower().encode() + b":")
        if not skipping:
            kept.append(line)
    return kept


@st.composite
def flip_bytes(draw, data: bytes) -> bytes:
    if not data:
        return data
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        index = draw(st.integers(0, len(buffer) - 1))
        buffer[index] ^= draw(st.integers(1, 255))
    return bytes(buffer)


@st.composite
def truncate(draw, data: bytes) -> bytes:
    return data[: draw(st.integers(0, len(data)))]


@st.composite
def insert_bytes(draw, data: bytes) -> bytes:
    index = draw(st.integers(0, len(data)))
    return data[:index] + draw(CHUNKS) + data[index:]


@st.composite
def delete_header_line(draw, data: bytes) -> bytes:
    lines, rest = _split_head(data)
    if not lines:
        return data
    del lines[draw(st.integers(0, len(lines) - 1))]
    return _join_head(lines, rest)


@st.composite
def duplicate_header_line(draw, data: bytes) -> bytes:
    lines, rest = _split_head(data)
    index = draw(st.integers(0, len(lines) - 1))
    lines.insert(draw(st.integers(0, len(lines))), lines[index])
    return _join_head(lines, rest)


@st.composite
def garbage_header(draw, data: bytes) -> bytes:
    name = draw(HEADER_NAMES)
    lines, rest = _split_head(data)
    lines = _without_header(lines, name)
    lines.insert(draw(st.integers(0, len(lines))), name.encode() + b": " + draw(GARBAGE_VALUES))
    return _join_head(lines, rest)


@st.composite
def odd_charset(draw, data: bytes) -> bytes:
    lines, rest = _split_head(data)
    lines = _without_header(_without_header(lines, "Content-Type"), "MIME-Version")
    charset = draw(CHARSETS).encode("utf-8", "surrogateescape")
    quoted = draw(st.booleans())
    value = b'"' + charset + b'"' if quoted else charset
    lines += [b"MIME-Version: 1.0", b"Content-Type: " + draw(st.sampled_from([b"text/plain", b"text/x-patch", b"application/octet-stream"])) + b"; charset=" + value]
    if draw(st.booleans()):
        rest = rest + draw(st.binary(max_size=40))
    return _join_head(lines, rest)


@st.composite
def base64_garbage(draw, data: bytes) -> bytes:
    lines, rest = _split_head(data)
    lines = _without_header(lines, "Content-Transfer-Encoding")
    lines.append(b"Content-Transfer-Encoding: base64")
    if draw(st.booleans()):
        body = draw(BASE64_GARBAGE).encode("ascii")
    else:  # valid base64 of garbage bytes, possibly cut short
        encoded = base64.encodebytes(draw(st.binary(max_size=120)))
        body = encoded[: draw(st.integers(0, len(encoded)))]
    return _join_head(lines, b"\n\n" + body)


MUTATIONS = (flip_bytes, truncate, insert_bytes, delete_header_line, duplicate_header_line, garbage_header, odd_charset, base64_garbage)


@st.composite
def mutated_mails(draw) -> bytes:
    data = draw(st.sampled_from(SEEDS))
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4)):
        data = draw(mutation(data))
    return data


def check_mail(data: bytes) -> None:
    """The property: parse_mail returns or rejects; take_in files or rejects it, once."""
    try:
        parsed = parse_mail(data)
    except MailRejected as rejection:
        parsed, rejected = None, rejection
    else:
        rejected = None
        assert isinstance(parsed, ParsedMail)
    with tempfile.TemporaryDirectory(dir=SCRATCH) as folder:
        db = Path(folder) / "patchbot.db"
        store = Store(db)
        try:
            outcome = take_in(store, RawMail(data, "fuzz"))
            assert outcome.status is not Status.FAILED, f"internal error: {store.mail(outcome.message_id).reason}"
            assert outcome.message_id == message_id_for(data)[0]
            rows = rows_for(db, outcome.message_id)
            assert len(rows) == 1, rows
            status, reason, kind = rows[0]
            if rejected is not None:
                assert outcome.status is Status.REJECTED and status == "rejected"
                assert reason == str(rejected) and reason and kind is None
            else:
                assert outcome.status is Status.FILED and status == "filed" and kind is not None
                assert parsed.message_id == outcome.message_id
            json.dumps(mail_object(store.mail(outcome.message_id)), ensure_ascii=False).encode("utf-8")
            again = take_in(store, RawMail(data, "fuzz"))
            assert again.status is Status.KNOWN and again.message_id == outcome.message_id
        finally:
            store.close()


FUZZ_SETTINGS = settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


HEAD = b"From: Jane <jane@example.org>\nMessage-Id: <example@example.org>\n"
DIFF_BODY = b"\ndiff --git a/f b/f\nindex 1..2 100644\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n"


@FUZZ_SETTINGS
@given(mutated_mails())
# Once filed as 'failed': a number SQLite cannot hold, and headers decoded into lone surrogates.
@example(HEAD + b"Subject: [PATCH 99999999999999999999/99999999999999999999] x\n" + DIFF_BODY)
@example(HEAD + b"Subject: [PATCH 1/99999999999999999999] x\n" + DIFF_BODY)
@example(HEAD + b"Subject: [PATCH v99999999999999999999] x\n" + DIFF_BODY)
@example(HEAD + b"Subject: [PATCH] x (v99999999999999999999)\n" + DIFF_BODY)
@example(HEAD + b"Subject: =?utf-7?q?+2AA-?= hello\n\nbody\n")
@example(HEAD + b"Subject: =?punycode?q?ib9b?= hello\n\nbody\n")
@example(HEAD + b"Subject: =?unicode-escape?q?\\ud800?= hello\n\nbody\n")
@example(HEAD + b"Subject: hi\nContent-Type: text/plain; charset=utf-7\n\nbody\nReviewed-by: +2AA-\n")
def test_mutated_mails_are_filed_or_rejected(data):
    check_mail(data)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=2000))
@example(b"")
@example(b"\x00" * 10)
@example(b"From: a@b.org")
@example(b"From: a@b.org\r\n\r\n")
@example(b"From: a@b.org\r\rMessage-Id: <x@y>\r\r")
@example(b"\n\nFrom: a@b.org\n\n")
@example(b"From \n\n")
@example(b"Content-Type: multipart/mixed; boundary=x\nFrom: a@b.org\n\n--x\n\n--x--\n")
def test_random_bytes_are_filed_or_rejected(data):
    check_mail(data)


def test_the_cli_shows_a_mail_in_an_odd_charset(tmp_path, capsys):
    """A trailer decoded with utf-7 once held a lone surrogate: `message show` died on it."""
    mail = tmp_path / "utf7.eml"
    mail.write_bytes(
        b"From: Jane <jane@example.org>\nSubject: hi\nMessage-Id: <u7@example.org>\n"
        b"Content-Type: text/plain; charset=utf-7\n\nbody\nReviewed-by: +2AA-\n"
    )
    db = str(tmp_path / "patchbot.db")
    assert patchbot_main(["-q", "--db", db, "ingest", str(mail)]) == 0
    capsys.readouterr()
    assert patchbot_main(["--db", db, "message", "show", "u7@example.org", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["trailers"] == [{"name": "Reviewed-by", "value": "+2AA-"}]
    assert patchbot_main(["--db", db, "message", "show", "u7@example.org"]) == 0
    assert "u7@example.org" in capsys.readouterr().out


def test_the_seeds_are_real_mails():
    """The property tests start from mails that parse, so that mutations reach deep code."""
    assert len(SEEDS) >= 2
    assert sum(isinstance(parse_mail(seed), ParsedMail) for seed in SEEDS) == len(SEEDS)


def test_the_fallback_seeds_parse_as_intended():
    patch, reply = (parse_mail(seed) for seed in _fallback_seeds())
    assert (patch.kind.value, patch.subject.counter, patch.subject.total, patch.subject.version) == ("patch", 1, 2, 2)
    assert [change.path for change in patch.files] == ["web/html/rpc.php"]
    assert reply.kind.value == "reply"
    assert (reply.sender.addr, reply.via_list) == ("joerg@example.org", True)
