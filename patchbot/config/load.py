"""Read and validate the TOML configuration into its records; every error names the key at fault."""

from __future__ import annotations

import os
import re
import tomllib
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from patchbot.config.records import (
    CommandsConfig, Config, ConfigError, EnvironmentConfig, EXECUTORS, GitlabConfig, ImapSourceConfig, LimitsConfig,
    LmtpSourceConfig, LOOPBACK_HOSTS, MailConfig, MaildirSourceConfig, PASS_AUDIENCES, REPLY_RESULTS, ReplyConfig,
    REPORT_FORMATS, RepositoryConfig, ServeConfig, SMTP_SECURITY, SmtpConfig, SourcesConfig, SuiteConfig,
)


def load_config(path: Path | None) -> Config:
    """The configuration in `path`, or the defaults when no file is given."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("", "no such file", path) from None
    except OSError as error:
        raise ConfigError("", f"cannot read it: {error.strerror}", path) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError("", f"not valid TOML: {error}", path) from None
    try:
        return _config_from(data, path)
    except ConfigError as error:
        raise ConfigError(error.key, error.message, path) from None


class _Table:
    """One TOML table being read: each key is taken once, leftovers are unknown keys."""

    def __init__(self, data: Any, key: str):
        if not isinstance(data, dict):
            raise ConfigError(key, "must be a table")
        self.data, self.key, self.taken = data, key, set()

    def _name(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.taken.add(name)
        if name not in self.data:
            if required:
                raise ConfigError(self._name(name), "is required")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ConfigError(self._name(name), f"must be a {expected}, not {type(value).__name__}")
        return value

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        values = self.get(name, list, None)
        if values is None:
            return default
        if not all(isinstance(value, str) for value in values):
            raise ConfigError(self._name(name), "must be a list of strings")
        return tuple(values)

    def positive(self, name: str, kind: type, default: Any) -> Any:
        value = self.get(name, kind, default)
        if value <= 0:
            raise ConfigError(self._name(name), "must be greater than 0")
        return value

    def table(self, name: str) -> "_Table":
        self.taken.add(name)
        return _Table(self.data.get(name, {}), self._name(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.taken)
        if unknown:
            known = ", ".join(sorted(self.taken)) or "none"
            raise ConfigError(self._name(unknown[0]), f"unknown key (known here: {known})")


def _config_from(data: dict[str, Any], path: Path) -> Config:
    top = _Table(data, "")
    here = path.parent

    store = top.table("store")
    db = _path(store.get("db", str), here)
    store.done()

    work = top.table("work")
    work_dir = _path(work.get("dir", str), here)
    parallel = work.positive("parallel", int, 2)
    work.done()

    runner = top.table("runner")
    sandbox_path = runner.strings("path", Config.path)
    expose = tuple(_path(value, here) for value in runner.strings("expose"))
    runner.done()

    repository = None
    if "repository" in data:
        table = top.table("repository")
        url = git_location(table.get("url", str, required=True), here)
        push_url = git_location(table.get("push_url", str), here)
        tag_branches = _strings_table(table, "tag_branches")
        repository = RepositoryConfig(
            url=url, default_branch=table.get("default_branch", str, "master"),
            branches=table.strings("branches"), tag_branches=tag_branches, push_url=push_url,
            pull_hosts=_pull_hosts(table), pull_local=table.get("pull_local", bool, False),
            pull_timeout_s=table.positive("pull_timeout", float, 300.0), pull_max_mb=table.positive("pull_max_mb", int, 500),
        )
        table.done()

    stacks_table = top.table("stacks")
    stacks = {}
    for name in list(stacks_table.data):
        stack = stacks_table.table(name)
        stacks[name] = stack.strings("paths")
        if not stacks[name]:
            raise ConfigError(f"stacks.{name}.paths", "must list at least one path pattern")
        stack.done()
    stacks_table.done()

    paths = top.table("paths")
    shared, ignored = paths.strings("shared"), paths.strings("ignore")
    paths.done()

    environments_table = top.table("environments")
    environments = {}
    for name in list(environments_table.data):
        table = environments_table.table(name)
        environments[name] = EnvironmentConfig(
            name=name, command=table.get("command", str, required=True), key_files=table.strings("key_files"),
            timeout_s=table.positive("timeout", float, 900.0), network=table.get("network", bool, False),
            offline_command=table.get("offline_command", str), wheels=_path(table.get("wheels", str), here),
            pinned_files=tuple(_path(value, here) for value in table.strings("pinned_files")),
        )
        if len({pinned.name for pinned in environments[name].pinned_files}) < len(environments[name].pinned_files):
            raise ConfigError(f"environments.{name}.pinned_files", "two files have the same name")
        table.done()
    environments_table.done()

    suites_table = top.table("suites")
    suites = {}
    for name in list(suites_table.data):
        suites[name] = _suite(suites_table.table(name), name, stacks, environments)
    suites_table.done()

    limits_table = top.table("limits")
    limits = LimitsConfig(
        memory_mb=limits_table.positive("memory_mb", int, 2048),
        processes=limits_table.positive("processes", int, 256),
        output_kb=limits_table.positive("output_kb", int, 10 * 1024),
    )
    limits_table.done()
    mail, smtp = _mail(top.table("mail")), _smtp(top.table("smtp"), here)
    reply = _reply(top.table("reply"))
    commands = _commands(top.table("commands"))
    serve, sources = _serve(top.table("serve")), _sources(top.table("sources"), here)
    executor, gitlab = _executor(top, here, suites)
    top.done()
    return Config(
        db=db, work_dir=work_dir, parallel=parallel, path=sandbox_path, expose=expose, repository=repository, stacks=stacks,
        shared_paths=shared, ignored_paths=ignored, environments=environments, suites=suites, limits=limits,
        mail=mail, reply=reply, smtp=smtp, commands=commands, serve=serve, sources=sources, executor=executor, gitlab=gitlab,
        source=path,
    )


def _suite(table: _Table, name: str, stacks: dict, environments: dict) -> SuiteConfig:
    suite_stacks = table.strings("stacks")
    for stack in suite_stacks:
        if stack != "*" and stack not in stacks:
            raise ConfigError(f"suites.{name}.stacks", f"names stack {stack!r}, which [stacks] does not define")
    always = table.get("always", bool, False)
    if not suite_stacks and not always:
        raise ConfigError(f"suites.{name}.stacks", "must name a stack (or set always = true)")
    report_format = table.get("format", str, "exit-code")
    if report_format not in REPORT_FORMATS:
        raise ConfigError(f"suites.{name}.format", f"must be one of {', '.join(REPORT_FORMATS)}")
    result_path = table.get("result_path", str)
    if report_format == "junit" and not result_path:
        raise ConfigError(f"suites.{name}.result_path", "is required when format is junit")
    environment = table.get("environment", str)
    if environment is not None and environment not in environments:
        raise ConfigError(f"suites.{name}.environment", f"names {environment!r}, which [environments] does not define")
    suite = SuiteConfig(
        name=name, command=table.get("command", str, required=True), stacks=suite_stacks,
        workdir=table.get("workdir", str, "."), timeout_s=table.positive("timeout", float, 600.0),
        format=report_format, result_path=result_path, requires=_requires(table, name),
        environment=environment, always=always,
    )
    table.done()
    return suite


def _requires(table: _Table, name: str) -> tuple[str, ...]:
    """Paths or globs (`test/test_*.py`: one match is enough) inside the base tree, as git names them."""
    required = table.strings("requires")
    for path in required:
        parts = path.rstrip("/").split("/")
        if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise ConfigError(f"suites.{name}.requires", f"{path!r} is not a path inside the tree (relative, no . or ..)")
    return required


def _mail(table: _Table) -> MailConfig:
    sender = table.get("from", str, MailConfig.sender)
    address = parseaddr(sender)[1]
    if "@" not in address:
        raise ConfigError("mail.from", f"{sender!r} has no mail address")
    list_address = table.get("list", str)
    if list_address is not None and "@" not in list_address:
        raise ConfigError("mail.list", f"{list_address!r} is not a mail address")
    if "log_url" in table.data:
        raise ConfigError("mail.log_url", "moved to [reply] log_url")
    mail = MailConfig(
        sender=sender, list_address=list_address, cc_author=table.get("cc_author", bool, True),
        message_id_domain=table.get("message_id_domain", str, address.rsplit("@", 1)[1]),
    )
    table.done()
    return mail


def _reply(table: _Table) -> ReplyConfig:
    results = table.get("results", str, ReplyConfig.results)
    if results not in REPLY_RESULTS:
        raise ConfigError("reply.results", f"must be one of {', '.join(REPLY_RESULTS)}")
    pass_to = table.strings("pass_to", ReplyConfig.pass_to)
    for audience in pass_to:
        if audience not in PASS_AUDIENCES:
            raise ConfigError("reply.pass_to", f"{audience!r} is not one of {', '.join(PASS_AUDIENCES)}")
    log_url = table.get("log_url", str)
    if log_url is not None and "{run}" not in log_url:
        raise ConfigError("reply.log_url", "must contain {run} (and may contain {suite})")
    mbox_url = table.get("mbox_url", str)
    if mbox_url is not None and "{series}" not in mbox_url:
        raise ConfigError("reply.mbox_url", "must contain {series} (and may contain {version})")
    reply = ReplyConfig(results=results, pass_to=pass_to, log_url=log_url, mbox_url=mbox_url,
                        lore_url=table.get("lore_url", str))
    table.done()
    return reply


def _commands(table: _Table) -> CommandsConfig:
    maintainers = table.strings("maintainers")
    for maintainer in maintainers:
        address = parseaddr(maintainer)[1]
        if "@" not in address or address != maintainer.strip():
            raise ConfigError("commands.maintainers", f"{maintainer!r} is not a bare mail address (name@example.org)")
    commands = CommandsConfig(
        maintainers=tuple(maintainer.strip().lower() for maintainer in maintainers),
        require_dkim=table.get("require_dkim", bool, CommandsConfig.require_dkim),
        max_per_hour=table.positive("max_per_hour", int, CommandsConfig.max_per_hour),
        max_age_days=table.positive("max_age_days", int, CommandsConfig.max_age_days),
    )
    table.done()
    return commands


def _smtp(table: _Table, here: Path) -> SmtpConfig:
    security = table.get("security", str, "plain")
    if security not in SMTP_SECURITY:
        raise ConfigError("smtp.security", f"must be one of {', '.join(SMTP_SECURITY)}")
    smtp = SmtpConfig(
        host=table.get("host", str, "localhost"), port=table.positive("port", int, 25), security=security,
        username=table.get("username", str), password_file=_path(table.get("password_file", str), here),
        timeout_s=table.positive("timeout", float, 60.0), retry_base_s=table.positive("retry_base", float, 60.0),
        max_attempts=table.positive("max_attempts", int, 10),
        dry_run_mbox=_path(table.get("dry_run_mbox", str), here), ca_file=_path(table.get("ca_file", str), here),
    )
    if smtp.password_file is not None and smtp.username is None:
        raise ConfigError("smtp.username", "is required with smtp.password_file")
    if smtp.password_file is not None and smtp.security == "plain" and smtp.host not in LOOPBACK_HOSTS:
        raise ConfigError("smtp.security", f"'plain' would send the password to {smtp.host} in clear: use starttls or tls")
    table.done()
    return smtp


def _serve(table: _Table) -> ServeConfig:
    serve = ServeConfig(
        workers=table.positive("workers", int, 2), grace_s=table.positive("grace", float, ServeConfig.grace_s),
        poll_s=table.positive("poll", float, 30.0), lease_s=table.positive("lease", float, 600.0),
        drain_s=table.positive("drain", float, 3600.0),
        store_grace_s=table.positive("store_grace", float, ServeConfig.store_grace_s),
        infra_retries=table.get("infra_retries", int, ServeConfig.infra_retries),
        retry_base_s=table.positive("retry_base", float, ServeConfig.retry_base_s),
    )
    if serve.infra_retries < 0:
        raise ConfigError("serve.infra_retries", "must be 0 or more")
    table.done()
    return serve


def _sources(table: _Table, here: Path) -> SourcesConfig:
    lmtp = maildir = imap = None
    if "lmtp" in table.data:
        section = table.table("lmtp")
        lmtp = LmtpSourceConfig(socket=_path(section.get("socket", str), here), host=section.get("host", str, "127.0.0.1"),
                                port=section.get("port", int))
        if (lmtp.socket is None) == (lmtp.port is None):
            raise ConfigError("sources.lmtp", "give either socket (a Unix socket path) or port, not both or neither")
        section.done()
    if "maildir" in table.data:
        section = table.table("maildir")
        maildir = MaildirSourceConfig(path=_path(section.get("path", str, required=True), here),
                                      poll_s=section.positive("poll", float, 5.0))
        section.done()
    if "imap" in table.data:
        section = table.table("imap")
        security = section.get("security", str, "tls")
        if security not in SMTP_SECURITY:
            raise ConfigError("sources.imap.security", f"must be one of {', '.join(SMTP_SECURITY)}")
        imap = ImapSourceConfig(
            host=section.get("host", str, required=True), username=section.get("username", str, required=True),
            password_file=_path(section.get("password_file", str, required=True), here),
            port=section.get("port", int), security=security, folder=section.get("folder", str, "INBOX"),
            poll_s=section.positive("poll", float, 60.0), ca_file=_path(section.get("ca_file", str), here),
            timeout_s=section.positive("timeout", float, 60.0),
        )
        if security == "plain" and imap.host not in LOOPBACK_HOSTS:
            raise ConfigError("sources.imap.security", f"'plain' would send the password to {imap.host} in clear: use starttls or tls")
        section.done()
    table.done()
    return SourcesConfig(lmtp, maildir, imap)


def _executor(top: _Table, here: Path, suites: dict) -> tuple[str, GitlabConfig | None]:
    table = top.table("executor")
    kind = table.get("kind", str, "local")
    if kind not in EXECUTORS:
        raise ConfigError("executor.kind", f"must be one of {', '.join(EXECUTORS)}")
    table.done()
    if "gitlab" not in top.data:
        if kind == "gitlab":
            raise ConfigError("gitlab", "is required when executor.kind is gitlab")
        return kind, None
    table = top.table("gitlab")
    push_url = git_location(table.get("push_url", str, required=True), here)
    gitlab = GitlabConfig(
        url=table.get("url", str, required=True).rstrip("/"), project=table.get("project", str, required=True),
        push_url=push_url, token_file=_path(table.get("token_file", str), here), token_env=table.get("token_env", str),
        timeout_s=table.positive("timeout", float, 3600.0), poll_s=table.positive("poll", float, 10.0),
        jobs=_strings_table(table, "jobs"), variables=_strings_table(table, "variables"),
        merge_requests=table.get("merge_requests", bool, False), target_branch=table.get("target_branch", str),
        commit_status=table.get("commit_status", bool, False), ca_file=_path(table.get("ca_file", str), here),
        api_retries=table.positive("api_retries", int, 5),
    )
    if (gitlab.token_file is None) == (gitlab.token_env is None):
        raise ConfigError("gitlab", "give the token as either token_file or token_env (one of them)")
    for suite in gitlab.jobs:
        if suite not in suites:
            raise ConfigError(f"gitlab.jobs.{suite}", "names a suite that [suites] does not define")
    table.done()
    return kind, gitlab


_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def _pull_hosts(table: _Table) -> tuple[str, ...]:
    """Host names, as a URL's host part reads (no scheme, port, path or user)."""
    hosts = table.strings("pull_hosts")
    for host in hosts:
        if not _HOST_NAME.fullmatch(host.lower()):
            raise ConfigError("repository.pull_hosts", f"{host!r} is not a host name (write git.kernel.org, not a URL)")
    return tuple(host.lower() for host in hosts)


def _strings_table(table: _Table, name: str) -> dict[str, str]:
    section = table.table(name)
    values = {key: section.get(key, str) for key in list(section.data)}
    section.done()
    return values


def git_location(value: str | None, here: Path) -> str | None:
    """A URL git understands as it is, or a local path made absolute against `here` (the config's
    folder; the current one for a path given on the command line)."""
    if value is None or "://" in value or value.startswith("git@"):
        return value
    return str(_path(value, here))


def _path(value: str | None, here: Path) -> Path | None:
    """A path from the config: ~ and $VARS expanded, relative to the config file's folder."""
    if value is None:
        return None
    expanded = Path(os.path.expandvars(value)).expanduser()
    return expanded if expanded.is_absolute() else (here / expanded).resolve()
