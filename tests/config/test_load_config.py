"""Configuration: validated at start, every error naming its key."""

from __future__ import annotations

import pytest

from patchbot.config.load import load_config
from patchbot.config.records import ConfigError

GOOD = """
[store]
db = "state/patchbot.db"
[work]
dir = "work"
parallel = 3
[repository]
url = "https://example.org/aurweb.git"
default_branch = "master"
branches = ["master", "pu"]
[repository.tag_branches]
pu = "pu"
[stacks.php]
paths = ["web/**", "**/*.php"]
[stacks.python]
paths = ["aurweb/**"]
[paths]
shared = ["schema/**"]
ignore = ["doc/**"]
[environments.venv]
command = "python3 -m venv $PATCHBOT_ENV"
key_files = ["requirements.txt"]
[suites.python]
stacks = ["python"]
command = "pytest --junitxml=report.xml"
format = "junit"
result_path = "report.xml"
timeout = 120
environment = "venv"
[limits]
memory_mb = 1024
"""


def load(tmp_path, text):
    path = tmp_path / "patchbot.toml"
    path.write_text(text)
    return load_config(path)


def test_a_full_config_loads(tmp_path):
    config = load(tmp_path, GOOD)
    assert config.db == tmp_path / "state" / "patchbot.db"
    assert config.work_dir == tmp_path / "work" and config.parallel == 3
    assert config.repository.tag_branches == {"pu": "pu"} and config.repository.branches == ("master", "pu")
    assert config.stacks["php"] == ("web/**", "**/*.php")
    assert config.suites["python"].timeout_s == 120.0 and config.suites["python"].environment == "venv"
    assert config.limits.memory_mb == 1024 and config.limits.processes == 256


@pytest.mark.parametrize("change, key", [
    (("parallel = 3", "parallel = 0"), "work.parallel"),
    (("parallel = 3", "paralel = 3"), "work.paralel"),
    (('format = "junit"', 'format = "xml"'), "suites.python.format"),
    (('result_path = "report.xml"', ""), "suites.python.result_path"),
    (('environment = "venv"', 'environment = "conda"'), "suites.python.environment"),
    (('stacks = ["python"]', 'stacks = ["ruby"]'), "suites.python.stacks"),
    (("timeout = 120", 'timeout = "2m"'), "suites.python.timeout"),
    (('url = "https://example.org/aurweb.git"', ""), "repository.url"),
    (("memory_mb = 1024", "memory = 1024"), "limits.memory"),
    (('[paths]', '[pathz]'), "pathz"),
])
def test_errors_name_the_key(tmp_path, change, key):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, GOOD.replace(*change))
    assert raised.value.key == key
    assert f": {key}: " in str(raised.value)


def test_not_toml_is_reported_with_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(tmp_path, "[store\n")


def test_a_password_is_never_sent_in_clear_to_another_host(tmp_path):
    text = '[smtp]\nhost = "mail.example.org"\nusername = "bot"\npassword_file = "pw"\n'
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    assert raised.value.key == "smtp.security"
    assert load(tmp_path, text + 'security = "starttls"\n').smtp.security == "starttls"
    assert load(tmp_path, text.replace("mail.example.org", "localhost")).smtp.host == "localhost"


def test_commands_and_push_url(tmp_path):
    text = GOOD.replace('default_branch = "master"', 'default_branch = "master"\npush_url = "../pushed.git"') + (
        '[commands]\nmaintainers = ["lukas@example.org"]\nrequire_dkim = true\nmax_per_hour = 5\n')
    config = load(tmp_path, text)
    assert config.commands.maintainers == ("lukas@example.org",)
    assert config.commands.require_dkim and config.commands.max_per_hour == 5
    assert config.repository.push_url == str((tmp_path / ".." / "pushed.git").resolve())


@pytest.mark.parametrize("section, key", [
    ('[commands]\nmaintainers = ["Lukas <lukas@example.org>"]\n', "commands.maintainers"),
    ('[commands]\nmaintainers = "lukas@example.org"\n', "commands.maintainers"),
    ("[commands]\nmax_per_hour = 0\n", "commands.max_per_hour"),
    ('[commands]\nrequire_dkim = "yes"\n', "commands.require_dkim"),
    ("[commands]\nmaintainer = []\n", "commands.maintainer"),
])
def test_command_settings_name_the_key(tmp_path, section, key):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, GOOD + section)
    assert raised.value.key == key
def test_the_gitlab_executor_needs_its_table_and_exactly_one_token_source(tmp_path):
    def load(text: str):
        path = tmp_path / "c.toml"
        path.write_text(text)
        return load_config(path)

    gitlab = '[gitlab]\nurl = "https://gitlab.example.org/"\nproject = "a/b"\npush_url = "remote.git"\n'
    with pytest.raises(ConfigError, match="gitlab: is required when executor.kind is gitlab"):
        load('[executor]\nkind = "gitlab"\n')
    with pytest.raises(ConfigError, match="executor.kind: must be one of local, gitlab"):
        load('[executor]\nkind = "cloud"\n')
    with pytest.raises(ConfigError, match="gitlab: give the token as either token_file or token_env"):
        load('[executor]\nkind = "gitlab"\n' + gitlab)
    with pytest.raises(ConfigError, match="gitlab.jobs.nope: names a suite that"):
        load('[executor]\nkind = "gitlab"\n' + gitlab + 'token_env = "T"\n[gitlab.jobs]\nnope = "x"\n')
    config = load('[executor]\nkind = "gitlab"\n' + gitlab + 'token_file = "token"\n[gitlab.variables]\nA = "1"\n')
    assert config.executor == "gitlab" and config.gitlab.url == "https://gitlab.example.org"
    assert config.gitlab.push_url == str(tmp_path / "remote.git") and config.gitlab.token_file == tmp_path / "token"
    assert config.gitlab.variables == {"A": "1"} and config.gitlab.timeout_s == 3600.0
