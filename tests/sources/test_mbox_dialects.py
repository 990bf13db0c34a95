"""The mbox reader against the files real tools write: git format-patch (plain and mboxrd), git
mailsplit, Python's mailbox, mutt-style and MAILER-DAEMON separators, Content-Length mboxes,
gzip, standard input; and a property test over every dialect."""

from __future__ import annotations

import gzip
import io
import logging
import mailbox
import re
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

from gitmail import GIT_ENV, PatchRepo
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from patchbot.sources.files import is_dated_from_line, source_for, split_mbox

GIT_FROM_LINE = re.compile(rb"^From [0-9a-f]{40} Mon Sep 17 00:00:00 2001\n", re.MULTILINE)


def read(path: Path) -> list[bytes]:
    return [raw.data for raw in source_for(str(path)).mails()]


def read_bytes(data: bytes) -> list[bytes]:
    return [raw.data for raw in split_mbox(iter(io.BytesIO(data).readlines()[1:]), "test")]


def git(repo: PatchRepo, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=repo.path, env=GIT_ENV, check=True, capture_output=True).stdout


def format_patch_files(repo: PatchRepo, tmp_path: Path, *extra: str) -> list[bytes]:
    """A cover letter and two patches as git format-patch writes them, one file each, the From_ line dropped."""
    repo.series(["Add the first file", "Add the second file"], cover="Two files")
    out = tmp_path / "patches"
    git(repo, "format-patch", "-q", "--cover-letter", "--thread", "-o", str(out), *extra, f"{repo.base}..{repo.last_branch}")
    return [GIT_FROM_LINE.sub(b"", path.read_bytes(), count=1) for path in sorted(out.iterdir())]


def test_separators_without_a_time_split_mails_as_pythons_mailbox_does(repo, tmp_path):
    """Issue 14: an archive whose From_ lines say `From A`, `From nobody`, `From MAILER-DAEMON`
    (dates in other shapes or none) was stored as one mail."""
    mails = format_patch_files(repo, tmp_path)
    separators = [b"From A\n", b"From nobody\n", b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n"]
    archive = tmp_path / "list.mbox"
    archive.write_bytes(b"".join(separator + mail + b"\n" for separator, mail in zip(separators, mails)))
    assert read(archive) == mails
    # Python's mailbox agrees on where each mail starts (it keeps the `From ` quoting, which we undo).
    box = mailbox.mbox(str(archive), create=False)
    assert [box.get_bytes(key) for key in box.keys()] == mails


def test_a_from_line_with_a_header_block_after_it_is_never_part_of_the_mail_before(repo, tmp_path, caplog):
    """Two patches whose archive lost the blank line between them: git mailsplit merges them
    (`From A` has no date), and `git am` made one commit of both; here they are two mails, and
    the split is logged."""
    mails = [mail.rstrip(b"\n") + b"\n" for mail in format_patch_files(repo, tmp_path)[1:]]
    archive = tmp_path / "cut.mbox"
    archive.write_bytes(b"From A\n" + mails[0] + b"From A\n" + mails[1])
    caplog.set_level(logging.WARNING)
    assert read(archive) == mails
    assert "#1: a From_ line ('From A') not after a blank line starts another mail" in caplog.text
    # git itself: the same file, with its first separator dated so it is not "corrupt", is one mail.
    split = tmp_path / "split"
    split.mkdir()
    dated = archive.read_bytes().replace(b"From A\n", b"From nobody Mon Sep 17 00:00:00 2001\n", 1)
    archive.write_bytes(dated)
    count = subprocess.run(["git", "mailsplit", f"-o{split}", str(archive)], check=True, capture_output=True, text=True)
    assert count.stdout.strip() == "1"


def test_a_from_line_in_prose_stays_in_its_mail(tmp_path):
    archive = tmp_path / "prose.mbox"
    archive.write_bytes(b"From A\nFrom: a@example.org\nSubject: one\n\nFirst line.\n\nFrom the start, this was\n"
                        b"unescaped by its writer.\n\nFrom B\nFrom: b@example.org\n\nTwo.\n")
    assert read(archive) == [b"From: a@example.org\nSubject: one\n\nFirst line.\n\nFrom the start, this was\n"
                             b"unescaped by its writer.\n", b"From: b@example.org\n\nTwo.\n"]


def test_mboxrd_from_git_format_patch_unescapes_one_level(repo, tmp_path):
    """A commit message line beginning with "From " came back as ">From "."""
    repo.commit_on_master("notes.txt", "x\n", "Quote a mail\n\nFrom the mailing list:\n>From an mboxo archive\n>>From deeper")
    mbox = git(repo, "format-patch", "--pretty=mboxrd", "--stdout", "-1", "HEAD")
    assert b"\n>From the mailing list:\n>>From an mboxo archive\n>>>From deeper\n" in mbox
    path = tmp_path / "rd.mbox"
    path.write_bytes(mbox)
    [mail] = read(path)
    assert b"\n\nFrom the mailing list:\n>From an mboxo archive\n>>From deeper\n" in mail
    # git mailsplit --mboxrd makes the same bytes (it keeps the From_ line, we do not).
    out = tmp_path / "split"
    out.mkdir()
    subprocess.run(["git", "mailsplit", "--mboxrd", f"-o{out}", str(path)], check=True, capture_output=True)
    assert GIT_FROM_LINE.sub(b"", (out / "0001").read_bytes(), count=1).rstrip(b"\n") == mail.rstrip(b"\n")


def test_git_mailsplit_round_trip_of_a_format_patch_series(repo, tmp_path):
    """format-patch --thread files put together (`cat *.patch`), read by us and by git mailsplit:
    the same mails, each the file format-patch wrote (its last blank line is the mbox's)."""
    mails = format_patch_files(repo, tmp_path)
    path = tmp_path / "series.mbox"
    path.write_bytes(b"".join(file.read_bytes() for file in sorted((tmp_path / "patches").iterdir())))
    ours = read(path)
    assert len(ours) == 3
    out = tmp_path / "split"
    out.mkdir()
    subprocess.run(["git", "mailsplit", f"-o{out}", str(path)], check=True, capture_output=True)
    theirs = [GIT_FROM_LINE.sub(b"", file.read_bytes(), count=1) for file in sorted(out.iterdir())]
    assert [mail.rstrip(b"\n") for mail in ours] == [mail.rstrip(b"\n") for mail in theirs]
    assert ours == [mail.rstrip(b"\n") + b"\n" for mail in mails]


def test_public_inbox_mboxrd_export_gzipped(tmp_path):
    """public-inbox's /t.mbox.gz: "From mboxrd@z Thu Jan  1 00:00:00 1970" lines, mboxrd quoting, gzip."""
    mails = [b"From: a@example.org\nSubject: [PATCH 1/2] a\n\nFrom the top.\n>From quoted.\n",
             b"From: b@example.org\nSubject: Re: [PATCH 1/2] a\n\n> From the top.\n"]
    export = b"".join(b"From mboxrd@z Thu Jan  1 00:00:00 1970\n" + re.sub(rb"(?m)^(>*From )", rb">\1", mail) + b"\n"
                      for mail in mails)
    path = tmp_path / "t.mbox.gz"
    path.write_bytes(gzip.compress(export))
    assert read(path) == mails


def test_python_mailbox_written_mboxo_reads_back_byte_for_byte(tmp_path):
    path = tmp_path / "python.mbox"
    mails = [b"From: a@example.org\nSubject: one\n\nFrom here on it is quoted.\nplain\n",
             b"From: b@example.org\nSubject: two\n\nFrom A\nSubject: not a header of this archive\n\nend\n"]
    box = mailbox.mbox(str(path))
    for mail in mails:
        box.add(mail)
    box.close()
    assert b"\n>From here on" in path.read_bytes()
    assert read(path) == mails


def test_mutt_written_mbox_of_a_series_with_a_reply(repo, tmp_path):
    """mutt saves with `From addr date` lines (asctime, no zone), escapes with mboxo and may add Content-Length."""
    mails = format_patch_files(repo, tmp_path)
    reply = b"From: reviewer@example.org\nSubject: Re: [PATCH 1/2] Add the first file\n\nFrom a quick look: fine.\n"
    archive = b""
    for mail in [*mails, reply]:
        escaped = re.sub(rb"(?m)^From ", b">From ", mail.split(b"\n\n", 1)[1])
        head = mail.split(b"\n\n", 1)[0]
        archive += b"From jane@example.org Mon Mar  1 12:00:00 2021\n" + head + b"\nContent-Length: %d\n\n" % len(escaped) + escaped + b"\n"
    path = tmp_path / "mutt.mbox"
    path.write_bytes(archive)
    got = read(path)
    assert len(got) == 4
    assert got[3].endswith(b"\n\nFrom a quick look: fine.\n")


def test_content_length_keeps_an_unescaped_body_whole_and_a_stale_one_is_ignored(tmp_path):
    body = b"A forwarded mail follows.\nFrom A\nFrom: someone@example.org\nSubject: inner\n\ninner body\n"
    cl2 = b"From: a@example.org\nContent-Length: %d\n\n" % len(body) + body
    second = b"From: b@example.org\n\nsecond\n"
    path = tmp_path / "cl2.mbox"
    path.write_bytes(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n" + cl2 + b"\nFrom A\n" + second)
    assert read(path) == [cl2, second]
    stale = b"From: a@example.org\nContent-Length: 5\n\nA body longer than five bytes.\n"
    path.write_bytes(b"From A\n" + stale + b"\nFrom A\n" + second)
    assert read(path) == [stale, second]


def test_gzip_is_known_by_its_bytes_on_stdin_and_in_a_file_without_the_suffix(tmp_path):
    archive = b"From A\nFrom: a@example.org\n\none\n\nFrom A\nFrom: b@example.org\n\ntwo\n"
    path = tmp_path / "archive"
    path.write_bytes(gzip.compress(archive))
    assert read(path) == [b"From: a@example.org\n\none\n", b"From: b@example.org\n\ntwo\n"]
    program = "from patchbot.sources.files import source_for\nprint(len(list(source_for('-').mails())))"
    count = subprocess.run([sys.executable, "-c", program], input=gzip.compress(archive), check=True, capture_output=True)
    assert count.stdout.strip() == b"2"


def test_memory_stays_flat_over_a_large_archive(tmp_path):
    mail = b"From A\nFrom: a@example.org\nSubject: s\n\n" + b"a line of body text, as long as many are\n" * 200 + b"\n"
    path = tmp_path / "big.mbox"
    with path.open("wb") as out:
        for _ in range(3000):  # 25 MB
            out.write(mail)
    tracemalloc.start()
    count = sum(1 for _ in source_for(str(path)).mails())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 3000
    assert peak < 1_000_000


def test_dated_from_lines_are_gits():
    assert is_dated_from_line(b"From 0123 Mon Sep 17 00:00:00 2001\n")
    assert is_dated_from_line(b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n")
    assert is_dated_from_line(b"From jane@example.org Mon Mar  1 12:00:00 2021\n")
    assert not is_dated_from_line(b"From A\n")
    assert not is_dated_from_line(b"From the 12:00:00 train\n")


# The property: every dialect's writer, then our reader, gives back the mails.
_LINES = st.sampled_from([
    b"plain text", b"From A", b"From nobody Mon Sep 17 00:00:00 2001", b">From quoted", b">>From twice",
    b"", b"Subject: looks like a header", b"From: x@example.org", b"  continued", b"-- ", b"diff --git a/x b/x",
    b"Content-Length: 3",
])


@st.composite
def generated_mails(draw) -> bytes:
    head = b"From: a@example.org\nSubject: %d\n" % draw(st.integers(0, 999))
    body = draw(st.lists(_LINES, max_size=12))
    crlf = draw(st.booleans())
    mail = head + b"\n" + b"".join(line + b"\n" for line in body)
    return mail.replace(b"\n", b"\r\n") if crlf else mail


def write_mboxo(mails: list[bytes], separator: bytes) -> bytes:
    return b"".join(separator + re.sub(rb"(?m)^From ", b">From ", mail) + b"\n" for mail in mails)


def write_mboxrd(mails: list[bytes], separator: bytes) -> bytes:
    return b"".join(separator + re.sub(rb"(?m)^(>*From )", rb">\1", mail) + b"\n" for mail in mails)


def with_content_length(mail: bytes) -> bytes:
    """The mail as an mboxcl2 writer stores it: a Content-Length header added, nothing escaped."""
    end = b"\r\n" if b"\r\n" in mail else b"\n"
    head, _, body = mail.partition(end + end)
    return head + end + b"Content-Length: %d" % len(body) + end + end + body


def write_mboxcl2(mails: list[bytes], separator: bytes) -> bytes:
    return b"".join(separator + with_content_length(mail) + b"\n" for mail in mails)


def has_quoted_from(mail: bytes) -> bool:
    return re.search(rb"(?m)^>+From ", mail) is not None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(generated_mails(), min_size=1, max_size=5),
       st.sampled_from([b"From A\n", b"From nobody\n", b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n",
                        b"From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n"]))
def test_property_every_dialect_reads_back_the_mails_written(mails, separator):
    assert read_bytes(write_mboxrd(mails, separator)) == mails
    # mboxcl2 escapes nothing: a body with ">From x" and no bare "From x" reads as mboxcl (escaped).
    for got, mail in zip(read_bytes(write_mboxcl2(mails, separator)), mails, strict=True):
        if not has_quoted_from(mail) or re.search(rb"(?m)^From ", mail):
            assert got == with_content_length(mail)
    # mboxo writes ">From x" and "From x" the same: only mails without the first can come back.
    assume(not any(has_quoted_from(mail) for mail in mails))
    assert read_bytes(write_mboxo(mails, separator)) == mails


@settings(max_examples=100, deadline=None)
@given(st.lists(generated_mails(), min_size=1, max_size=4))
def test_property_pythons_mailbox_writes_what_we_read_back(mails):
    """Python's mailbox writes mboxo with "From MAILER-DAEMON <date>" lines (and LF line ends)."""
    mails = [mail.replace(b"\r\n", b"\n") for mail in mails]
    assume(not any(has_quoted_from(mail) for mail in mails))
    with tempfile.TemporaryDirectory() as folder:
        box = mailbox.mbox(f"{folder}/python.mbox")
        for mail in mails:
            box.add(mail)
        box.close()
        assert read(Path(folder) / "python.mbox") == mails


@settings(max_examples=30, deadline=None)
@given(st.lists(generated_mails(), min_size=1, max_size=4))
def test_property_git_mailsplit_mboxrd_splits_and_unescapes_as_we_do(mails):
    data = write_mboxrd(mails, b"From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n")
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "in.mbox").write_bytes(data)
        Path(folder, "out").mkdir()
        subprocess.run(["git", "mailsplit", "--mboxrd", "--keep-cr", f"-o{folder}/out", f"{folder}/in.mbox"],
                       check=True, capture_output=True)
        theirs = [GIT_FROM_LINE.sub(b"", path.read_bytes(), count=1) for path in sorted(Path(folder, "out").iterdir())]
    assert theirs == [mail + b"\n" for mail in mails]
    assert read_bytes(data) == mails


def test_a_single_mail_file_holding_two_mails_is_split_and_one_with_from_prose_is_not(repo, tmp_path, caplog):
    """Two patches put together after their From_ lines were cut (a mail client's "save as" of
    both): one file without a leading From_ line, but never one mail."""
    mails = [mail.rstrip(b"\n") + b"\n" for mail in format_patch_files(repo, tmp_path)[1:]]
    path = tmp_path / "two.eml"
    path.write_bytes(mails[0] + b"\nFrom nobody\n" + mails[1])
    caplog.set_level(logging.WARNING)
    assert read(path) == mails
    assert "not an mbox, yet a From_ line ('From nobody') with a header block after it" in caplog.text
    single = b"From: a@example.org\nSubject: one\n\n>From stays quoted: this is no mbox.\nFrom me, thanks.\n"
    path.write_bytes(single)
    assert [raw.data for raw in source_for(str(path)).mails()] == [single]
    assert [raw.origin for raw in source_for(str(path)).mails()] == [str(path)]
