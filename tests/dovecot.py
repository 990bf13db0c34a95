"""A real Dovecot IMAP server on 127.0.0.1 for tests: IMAPS with a certificate made here, and
plain IMAP with STARTTLS, one user whose mail the test puts in with IMAP APPEND.

Dovecot (Debian's dovecot-imapd; `.ci/setup` installs it) runs in the foreground, in its own
process group, with a config of its own in a scratch folder and on free ports, so a system-wide
Dovecot on 143/993 does not matter. Dovecot refuses to serve mail as root: started by root,
the user's mail belongs to `nobody`, and the folder is world-traversable for the unprivileged
login process; started by anyone else, every Dovecot process runs as that user.

    with dovecot_server() as dovecot:
        dovecot.append(raw_bytes)        # IMAP APPEND to INBOX
        ImapSourceConfig(host=dovecot.host, port=dovecot.imaps_port, username=dovecot.user,
                         password_file=dovecot.password_file, ca_file=dovecot.ca_file)
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from patchbot.demo.run import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
NOT_INSTALLED = "dovecot not installed: run .ci/setup (Debian package dovecot-imapd)"

CONFIG = """\
base_dir = {folder}/run
state_dir = {folder}/state
instance_name = patchbot-test-{imaps_port}
protocols = imap
listen = 127.0.0.1
log_path = {folder}/dovecot.log
ssl = yes
ssl_cert = <{folder}/cert.pem
ssl_key = <{folder}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={folder}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass(frozen=True)
class Dovecot:
    host: str
    imaps_port: int  # TLS from the first byte
    imap_port: int  # plain, STARTTLS offered
    user: str
    password: str
    password_file: Path
    ca_file: Path  # the server's self-signed certificate
    folder: Path

    def client(self) -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL(self.host, self.imaps_port, ssl_context=ssl.create_default_context(cafile=self.ca_file))
        client.login(self.user, self.password)
        return client

    def append(self, raw: bytes, folder: str = "INBOX", flags: str = "") -> None:
        """Put a mail in the mailbox as a delivery would."""
        client = self.client()
        try:
            status, data = client.append(folder, flags or None, None, raw)
            assert status == "OK", data
        finally:
            client.logout()

    def kick(self) -> None:
        """Drop the user's connections, as the server's autologout or a restart would."""
        subprocess.run(["doveadm", "-c", str(self.folder / "dovecot.conf"), "kick", self.user],
                       check=True, capture_output=True)

    def flags(self, folder: str = "INBOX") -> list[str]:
        """The flags of every mail in the folder, in order."""
        client = self.client()
        try:
            client.select(folder)
            status, data = client.fetch("1:*", "(FLAGS)")
            return [line.decode() for line in data if line]
        finally:
            client.logout()


def installed() -> bool:
    return Path(DOVECOT).exists()


@contextmanager
def dovecot_server() -> Iterator[Dovecot]:
    folder = Path(tempfile.mkdtemp(prefix="patchbot-dovecot-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
                       check=True, capture_output=True)
        password = "imap-secret-7f3a"
        (folder / "passwd").write_text(f"patchbot:{{PLAIN}}{password}\n")
        (folder / "password").write_text(password + "\n")
        home = folder / "home" / "patchbot"
        home.mkdir(parents=True)
        users = _process_users()
        shutil.chown(home, users["mail_user"], users["mail_group"])
        imap_port, imaps_port = free_port(), free_port()
        config = folder / "dovecot.conf"
        config.write_text(CONFIG.format(folder=folder, imap_port=imap_port, imaps_port=imaps_port, **users))
        process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            _wait_for_port(imaps_port, process, folder)
            yield Dovecot("127.0.0.1", imaps_port, imap_port, "patchbot", password, folder / "password",
                          folder / "cert.pem", folder)
        finally:
            # The whole group: the master's imap and auth children must not outlive the test.
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass  # it failed to start, and its children went with it


def _process_users() -> dict[str, str]:
    """Who Dovecot's processes and the mail run as."""
    if os.geteuid() == 0:
        return dict(internal_user="dovecot", internal_group="dovecot", login_user="dovenull",
                    mail_user="nobody", mail_group="nogroup")
    me, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    return dict(internal_user=me, internal_group=group, login_user=me, mail_user=me, mail_group=group)


def _wait_for_port(port: int, process: subprocess.Popen, folder: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (folder / "dovecot.log").read_text() if (folder / "dovecot.log").exists() else ""
            raise RuntimeError(f"dovecot exited with {process.returncode}: {process.stdout.read().decode()}{log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"dovecot did not listen on {port} within {timeout} s")
