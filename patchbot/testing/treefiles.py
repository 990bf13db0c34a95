"""Open and remove files inside a tested tree without ever following one of its symlinks.

A tested tree is the patch's: any path in it may be a symlink to the bot's state, its secrets
or /proc/self/pagemap (issue 11 item 9: a committed `test-results -> <bot state>` made the bot
delete a file there). The bot reaches a file of a tree only from the tree's root, one component
at a time with O_NOFOLLOW (openat), so a symlink anywhere on the way is refused, not followed;
it reads only regular files, and no more than a cap.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from pathlib import Path
from typing import BinaryIO


class TreePathRefused(Exception):
    """The path leaves the tree, passes a symlink, or is not a regular file."""


def tree_relative(*parts: str) -> tuple[str, ...]:
    """Join paths given relative to the tree (a workdir, then a file in it) into components, or
    refuse: absolute paths and paths climbing out of the tree never name a file of it."""
    joined = posixpath.normpath(posixpath.join(*parts)) if parts else "."
    if joined.startswith("/") or joined == ".." or joined.startswith("../"):
        raise TreePathRefused(f"{posixpath.join(*parts)} leads outside the worktree")
    return tuple(part for part in joined.split("/") if part not in ("", "."))


def folder_refusal(root: Path, relative: tuple[str, ...]) -> str | None:
    """None when the folder exists in the tree with no symlink on the way, else why not."""
    try:
        os.close(_open_folder(root, relative))
    except TreePathRefused as refused:
        return str(refused)
    return None


def open_tree_file(root: Path, relative: tuple[str, ...], limit: int) -> BinaryIO:
    """A regular file of the tree, open for reading; refused past `limit` bytes, through a
    symlink, or if not a regular file (a FIFO, a device)."""
    if not relative:
        raise TreePathRefused("no file named")
    folder = _open_folder(root, relative[:-1])
    try:
        try:
            # O_NONBLOCK: a FIFO must not hang the bot on open; it is refused below.
            fd = os.open(relative[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
        except OSError as error:
            raise _refusal("/".join(relative), error, folder=False) from None
    finally:
        os.close(folder)
    file = open(fd, "rb")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        file.close()
        what = "is not a regular file" if not stat.S_ISREG(info.st_mode) else f"is larger than {limit} bytes"
        raise TreePathRefused(f"{'/'.join(relative)} {what}")
    return file


def remove_tree_file(root: Path, relative: tuple[str, ...]) -> None:
    """Remove a file (or a symlink itself) inside the tree; nothing when absent or the way to it
    passes a symlink: that way leads to no file of the tree."""
    if not relative:
        return
    try:
        folder = _open_folder(root, relative[:-1])
    except TreePathRefused:
        return
    try:
        os.unlink(relative[-1], dir_fd=folder)
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.EISDIR, errno.EPERM):
            raise
    finally:
        os.close(folder)


def _open_folder(root: Path, relative: tuple[str, ...]) -> int:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the root is ours
    for index, part in enumerate(relative):
        try:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as error:
            os.close(fd)
            raise _refusal("/".join(relative[:index + 1]), error) from None
        os.close(fd)
        fd = next_fd
    return fd


def _refusal(path: str, error: OSError, folder: bool = True) -> TreePathRefused:
    if error.errno == errno.ELOOP or (folder and error.errno == errno.ENOTDIR):
        what = "a symlink or not a folder" if folder else "a symlink"
        return TreePathRefused(f"{path} is {what}, which may lead outside the worktree:"
                               " patchbot does not follow links of a tested tree")
    if error.errno == errno.ENOENT:
        return TreePathRefused(f"{path} does not exist" if folder else f"{path} was not written")
    return TreePathRefused(f"{path}: {error.strerror}")
