"""Attack 7 of issue 11: a list member takes over another author's series by posting into its thread.

Mails are made by git format-patch from a clone of the sample project, delivered as the LMTP
source delivers them (kept, then filed by the pipeline's own stage, with the config), and the
bot's replies are read back from a real SMTP server on 127.0.0.1. The patches touch only
documentation, which no suite covers: the attacks are about filing and threading, and need no
sandbox.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from gitmail import Mail, PatchRepo

from reply.outbox_support import LIST, Bot, Handler, parse, smtp_server, write_config
from patchbot.series.intake import keep
from patchbot.demo.sample import build_sample_repo
from patchbot.sources import RawMail

VERA = "Vera Example <vera@example.org>"
MALLORY = "Mallory <mallory@evil.example>"
LUKAS = "Lukas Fleischer <lukas@example.org>"  # the sample config's maintainer
GRACE_S = 0.01


@pytest.fixture(scope="module")
def sample_repo(tmp_path_factory) -> Path:
    return build_sample_repo(tmp_path_factory.mktemp("sample") / "aurweb")


@pytest.fixture
def patches(sample_repo, tmp_path) -> PatchRepo:
    """A clone of the sample project to format patch mails from."""
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(sample_repo), str(target)], check=True, capture_output=True)
    repo = PatchRepo.__new__(PatchRepo)  # PatchRepo's own __init__ makes a fresh repository
    repo.path, repo.serial = target, 0
    repo.base = repo._git("rev-parse", "HEAD").strip()
    return repo


@pytest.fixture
def pushed(sample_repo, tmp_path) -> Path:
    """Where "patchbot: apply" pushes: a real bare repository."""
    path = tmp_path / "pushed.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(sample_repo), str(path)], check=True, capture_output=True)
    return path


@pytest.fixture
def bot(sample_repo, pushed, tmp_path):
    handler = Handler()
    with smtp_server(handler) as port:
        config = write_config(tmp_path, sample_repo, port)
        text = config.read_text()
        assert 'default_branch = "master"\n' in text and "\nrequire_dkim = false\n" in text
        text = text.replace('default_branch = "master"\n', f'default_branch = "master"\npush_url = "{pushed}"\n')
        # An incomplete series (Mallory's lone 2/2) is tested with what it has at once.
        config.write_text(text + f"\n[serve]\ngrace = {GRACE_S}\n")
        bot = Bot(config)
        bot.handler = handler
        yield bot
        bot.close()


def post(bot: Bot, *mails: Mail) -> None:
    """As the LMTP source delivers them (kept, not yet filed), then one pass of the pipeline."""
    for mail in mails:
        with bot.store.transaction():
            keep(bot.store, RawMail(mail.as_bytes(), "lmtp"))
    bot.run()


def sent_by(sender: str, mails: list[Mail]) -> list[Mail]:
    for mail in mails:
        mail.set("From", sender)
    return mails


def docs(*names: str) -> list[tuple[str, str]]:
    return [(f"doc/{name}.md", f"# {name}\n") for name in names]


def replies_to(bot: Bot, mail: Mail) -> list:
    return [parse(data) for _, _, data in bot.handler.messages if str(parse(data)["In-Reply-To"]).strip() == mail.message_id]


def body(reply) -> str:
    return reply.get_content().replace("\r\n", "\n")


def series_of(bot: Bot, mail: Mail):
    return bot.store.series(bot.store.mail(mail.message_id).series_id)


def test_attack_7_v2_of_a_patch_from_another_sender_does_not_take_over_the_series(bot, patches, pushed):
    vera = sent_by(VERA, patches.series(["Document search", "Document info"], cover="Document the RPC",
                                        files=docs("search", "info")))
    post(bot, *vera)
    before = series_of(bot, vera[0])
    assert before.complete and len(replies_to(bot, vera[0])) == 1

    # Mallory's "[PATCH v2 2/2]" in reply to Vera's 2/2: once v2 of Vera's series.
    attack = sent_by(MALLORY, patches.series(["Document info"], thread=None, files=docs("info-evil")))[0]
    attack.set("Subject", "[PATCH v2 2/2] Document info")
    attack.set("In-Reply-To", vera[2].message_id)
    attack.set("References", f"{vera[0].message_id} {vera[2].message_id}")
    post(bot, attack)
    time.sleep(GRACE_S * 10)  # past the grace period of Mallory's lone 2/2
    bot.run()

    after = series_of(bot, vera[0])
    assert after == before and not after.obsolete and bot.store.newer_version(after.id) is None
    mallorys = series_of(bot, attack)
    assert mallorys.id != after.id and mallorys.author == "mallory@evil.example"
    assert mallorys.supersedes_id is None and mallorys.cover_message_id is None
    assert [slot.message_id for slot in mallorys.patches] == [attack.message_id]

    # Nothing more in Vera's thread under her cover letter; Mallory's result answers Mallory's mail,
    # in the thread, says whose it is, and goes to the list and Mallory, not to Vera.
    assert len(replies_to(bot, vera[0])) == 1
    [reply] = replies_to(bot, attack)
    assert vera[0].message_id in str(reply["References"]) and vera[2].message_id in str(reply["References"])
    assert str(reply["Subject"]) == "Re: [PATCH v2 2/2] Document info"
    assert str(reply["X-Patchbot-Series"]) == f"{mallorys.id}/v2"
    assert body(reply).startswith(
        "This is a series of its own, from:\n  Mallory <mallory@evil.example>\n"
        "It was sent in the thread of another series and does not replace it:\n"
        "  \"Document the RPC\" from Vera Example <vera@example.org>\n")
    assert LIST in str(reply["To"]) and "mallory@evil.example" in str(reply["Cc"])
    assert "vera@example.org" not in str(reply["To"]) + str(reply["Cc"])
    # Vera's own reply never said anything of the kind.
    assert "series of its own" not in body(replies_to(bot, vera[0])[0])

    # The maintainer applies Vera's series: it is pushed, with Vera's patches only.
    command = Mail([("From", LUKAS), ("To", LIST), ("Subject", "Re: [PATCH 0/2] Document the RPC"),
                    ("Message-Id", "<apply.vera@example.org>"), ("In-Reply-To", vera[0].message_id),
                    ("References", vera[0].message_id), ("Date", "Mon, 01 Mar 2021 18:00:00 +0000")],
                   "Thanks, applying.\n\npatchbot: apply master v1\n")
    post(bot, command)
    [answer] = replies_to(bot, command)
    assert "applied to master and pushed" in body(answer), body(answer)
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", "master"], cwd=pushed, check=True,
                           capture_output=True, text=True).stdout.split()
    assert "doc/search.md" in files and "doc/info.md" in files and "doc/info-evil.md" not in files


def test_attack_7_cover_letter_from_another_sender_does_not_rebase_or_rethread_the_series(bot, patches):
    """Mallory's "[PATCH 0/2]" with a base-commit: line, in reply to Vera's cover-less series
    before it is complete: it once became the series' cover, so that the series was tested on
    Mallory's base and its result sent under Mallory's mail."""
    vera = sent_by(VERA, patches.series(["Document search", "Document info"], files=docs("search", "info")))
    first_commit = patches._git("rev-list", "--max-parents=0", "HEAD").strip()
    cover = sent_by(MALLORY, patches.series(["Anything"], thread=None, files=docs("anything")))[0]
    cover.set("Subject", "[PATCH 0/2] Document the RPC, better")
    cover.set("In-Reply-To", vera[0].message_id)
    cover.set("References", vera[0].message_id)
    cover.body = f"Better docs.\n\nbase-commit: {first_commit}\n"
    post(bot, vera[0], cover, vera[1])

    veras = series_of(bot, vera[0])
    assert veras.cover_message_id is None and veras.title == "Document search" and veras.complete
    [reply] = replies_to(bot, vera[0])
    assert "on master" in body(reply) and "base-commit" not in body(reply)
    assert replies_to(bot, cover) == []  # a cover letter alone is nothing to test
    assert series_of(bot, cover).author == "mallory@evil.example"
