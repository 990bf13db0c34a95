"""What a configuration holds: one frozen record per TOML table, and the values a key may take."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from patchbot import PatchbotError


class ConfigError(PatchbotError):
    """The configuration is unusable; `key` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str, path: Path | None = None):
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")
        self.key, self.message = key, message


REPORT_FORMATS = ("junit", "tap", "exit-code")


@dataclass(frozen=True)
class RepositoryConfig:
    url: str  # a URL git can clone, or a local path
    default_branch: str = "master"
    branches: tuple[str, ...] = ()  # the branches a maintainer may name as a base
    tag_branches: dict[str, str] = field(default_factory=dict)  # subject tag -> branch
    push_url: str | None = None  # where "patchbot: apply BRANCH" pushes (a URL or a path)
    # Pull requests are fetched only from these hosts (https:// or git://), never from any URL a
    # mail names; local paths and file:// URLs only with pull_local (tests, a mirror of one's own).
    pull_hosts: tuple[str, ...] = ()
    pull_local: bool = False
    pull_timeout_s: float = 300.0  # one fetch of a pull request, at most
    pull_max_mb: int = 500  # what one fetch may bring in, at most


@dataclass(frozen=True)
class EnvironmentConfig:
    """A set-up step whose result is cached under the hash of its inputs (see environments.py)."""

    name: str
    command: str  # run in a folder holding only the key files, $PATCHBOT_ENV the folder to fill
    key_files: tuple[str, ...]  # files (or folders) of the tree the command reads, from git objects
    timeout_s: float = 900
    network: bool = False  # the build may download, but only from reviewed (or trusted) files
    offline_command: str | None = None  # instead of command when building without network
    wheels: Path | None = None  # a wheel folder offline builds may install from (PIP_FIND_LINKS)
    pinned_files: tuple[Path, ...] = ()  # the operator's requirement files, in $PATCHBOT_PINNED


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    command: str
    stacks: tuple[str, ...]  # run when the series touches one of these ("*" for any change)
    workdir: str = "."
    timeout_s: float = 600
    format: str = "exit-code"  # junit | tap | exit-code
    result_path: str | None = None  # the JUnit file, relative to workdir
    requires: tuple[str, ...] = ()  # run only where these paths exist in the base tree
    environment: str | None = None
    always: bool = False  # run for every series, whatever it touches


@dataclass(frozen=True)
class LimitsConfig:
    memory_mb: int = 2048
    processes: int = 256
    output_kb: int = 10 * 1024


@dataclass(frozen=True)
class MailConfig:
    """Who patchbot is on the list, and where its replies go."""

    sender: str = "patchbot <patchbot@localhost>"  # the From of every reply
    list_address: str | None = None  # replies go To the list...
    cc_author: bool = True  # ...and Cc the series' author
    message_id_domain: str = "localhost"  # patchbot's own mail is recognised by it


@dataclass(frozen=True)
class ReplyConfig:
    """[reply]: what the list hears, and where a reader finds what a reply points to."""

    results: str = "failures"  # always | failures: a PASS reaches the list only as `pass_to` says
    pass_to: tuple[str, ...] = ("first-time", "asked")  # with results = failures, who still hears a PASS
    log_url: str | None = None  # e.g. "https://ci.example.org/logs/{run}/{suite}.log"
    mbox_url: str | None = None  # where the service publishes series mboxes, with {series} and {version}
    lore_url: str | None = None  # the list's public-inbox (lore), so that `b4 am <msgid>` fetches a series


REPLY_RESULTS = ("always", "failures")
PASS_AUDIENCES = ("first-time", "asked")


@dataclass(frozen=True)
class CommandsConfig:
    """Who may steer patchbot by replying, and how much."""

    maintainers: tuple[str, ...] = ()  # addresses, lower case: may use every command
    # A command counts only if a DKIM signature of its sender's domain verifies and covers every
    # header patchbot reads: a From header alone is trivial to forge.
    require_dkim: bool = True
    max_per_hour: int = 10  # commands per sender; beyond, refused (with one note)
    max_age_days: int = 7  # a signed command counts only this long after its signed Date (replays)


SMTP_SECURITY = ("plain", "starttls", "tls")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 25
    security: str = "plain"  # plain | starttls | tls
    username: str | None = None
    password_file: Path | None = None  # read when sending; never logged
    ca_file: Path | None = None  # certificates to trust for TLS, besides the system's
    timeout_s: float = 60.0
    retry_base_s: float = 60.0  # first retry after a temporary failure; doubles each time
    max_attempts: int = 10  # the retry window: then the reply is held, tried hourly (outbox retry)
    dry_run_mbox: Path | None = None  # write replies to this mbox instead of sending


@dataclass(frozen=True)
class ServeConfig:
    """How `patchbot serve` schedules its work."""

    workers: int = 2  # series tested at once (each runs its suites `work.parallel` at a time)
    grace_s: float = 6 * 3600.0  # an incomplete series is tested with what it has after this long
    poll_s: float = 30.0  # the pipeline runs at least this often, for retries and timers
    lease_s: float = 600.0  # a job whose worker stops renewing is taken over after this long
    drain_s: float = 3600.0  # on SIGTERM, running tests get this long to finish
    store_grace_s: float = 300.0  # a database that cannot be written this long ends serve (exit 75)
    # A test the machine failed (could not start, could not judge) is tried again this many
    # times, after retry_base seconds, doubling; then the list hears once that it was not tested.
    infra_retries: int = 6
    retry_base_s: float = 60.0


@dataclass(frozen=True)
class LmtpSourceConfig:
    """Mail delivered by the MTA: on a Unix socket (Postfix's lmtp:unix:) or a TCP port."""

    socket: Path | None = None
    host: str = "127.0.0.1"
    port: int | None = None


@dataclass(frozen=True)
class MaildirSourceConfig:
    """A Maildir that fetchmail or procmail delivers to; stored mails move to cur/, marked seen."""

    path: Path
    poll_s: float = 5.0


@dataclass(frozen=True)
class ImapSourceConfig:
    """A mailbox polled over IMAP; a mail is marked \\Seen only once it is stored."""

    host: str
    username: str
    password_file: Path
    port: int | None = None  # 993 for tls, 143 otherwise
    security: str = "tls"  # tls | starttls | plain (plain only to a loopback host)
    folder: str = "INBOX"
    poll_s: float = 60.0
    ca_file: Path | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True)
class SourcesConfig:
    lmtp: LmtpSourceConfig | None = None
    maildir: MaildirSourceConfig | None = None
    imap: ImapSourceConfig | None = None


EXECUTORS = ("local", "gitlab")


@dataclass(frozen=True)
class GitlabConfig:
    """Where the `gitlab` executor runs the suites: a GitLab project's CI, through its REST API."""

    url: str  # https://gitlab.archlinux.org
    project: str  # "archlinux/aurweb", or its numeric id
    push_url: str  # where the test branches are pushed (a git URL or a path)
    token_file: Path | None = None  # exactly one of these two; the token is never logged
    token_env: str | None = None
    timeout_s: float = 3600.0  # a pipeline still running after this is canceled: TIMEOUT
    poll_s: float = 10.0
    jobs: dict[str, str] = field(default_factory=dict)  # suite -> job (and JUnit suite) name; default the same
    variables: dict[str, str] = field(default_factory=dict)  # CI variables pushed with each branch
    merge_requests: bool = False  # open or update a merge request per series
    target_branch: str | None = None  # of the merge requests; default [repository] default_branch
    commit_status: bool = False  # post the result as a commit status of the tested commit
    ca_file: Path | None = None
    api_retries: int = 5  # transient API errors (5xx, 429) retried with backoff


@dataclass(frozen=True)
class Config:
    db: Path | None = None  # None: the default under the user's data directory
    work_dir: Path | None = None  # mirrors, worktrees, environments and logs
    parallel: int = 2
    path: tuple[str, ...] = ("/usr/local/bin", "/usr/bin", "/bin")  # PATH inside the sandbox
    expose: tuple[Path, ...] = ()  # read-only inside the sandbox even where homes are hidden
    repository: RepositoryConfig | None = None
    stacks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    shared_paths: tuple[str, ...] = ()  # belong to every stack
    ignored_paths: tuple[str, ...] = ()  # belong to none
    environments: dict[str, EnvironmentConfig] = field(default_factory=dict)
    suites: dict[str, SuiteConfig] = field(default_factory=dict)
    limits: LimitsConfig = LimitsConfig()
    mail: MailConfig = MailConfig()
    reply: ReplyConfig = ReplyConfig()
    smtp: SmtpConfig = SmtpConfig()
    commands: CommandsConfig = CommandsConfig()
    serve: ServeConfig = ServeConfig()
    sources: SourcesConfig = SourcesConfig()
    executor: str = "local"  # where suites run: local (the sandbox) or gitlab
    gitlab: GitlabConfig | None = None
    source: Path | None = None
