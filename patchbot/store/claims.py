"""Who holds a claim in the store, and whether that holder can still be working on it.

A claim names its process as host:pid:start, the start being the process's start time in
clock ticks since boot: a pid reused by a later process (a restarted container often gets
the same pid) then does not pass for the process that died holding the claim.
"""

from __future__ import annotations

import os
import socket


def _start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat; the command name before it may hold spaces and parentheses."""
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()[19].decode()


CLAIMER = f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or 0}"


def claimer_alive(claimer: str) -> bool:
    """Whether the process that made a claim may still be working on it.

    Another machine's claim is alive until its lease ends: only the lease can tell."""
    host, _, rest = claimer.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    return not start or _start_ticks(int(pid)) in (start, None)
