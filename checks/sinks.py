"""Sinks: deliver a rendered report to a file named on the command line (--output).

What the path is decides how it is written. A regular file (or a new path) is
replaced atomically: a temp file beside it, fsynced, renamed over it, so a reader
never sees half a report. A symlink is followed and its target replaced, the link
kept. A FIFO or a character device (/dev/null, a terminal) is written through, never
replaced; so is one of our own descriptors (/dev/stdout, /dev/fd/3), whatever it is
open on. Anything else (a directory, a block device, a socket) is refused before the
run starts. A report is written in two steps (stage, then write), so that what can fail
fails before the report is final: the run's exit code then says so.
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Optional, Tuple

from checks import ConfigError, fsio
from checks.fsio import WRITE_TIMEOUT_S


def check_output(path: str, flag: str = "--output") -> None:
    """Refuse, before anything runs, a path the report could not or must not be written to."""
    if not path.strip():
        raise ConfigError("%s: give a file name" % flag)
    fd = _our_descriptor(path)
    if fd is not None:
        import fcntl
        try:
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
        except OSError:
            writable = False
        if not writable:
            raise ConfigError("%s %s: descriptor %d is not open for writing" % (flag, path, fd))
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:  # a new file, or a symlink to one: its directory must exist
        target = os.path.realpath(path)
        if not os.path.isdir(os.path.dirname(target)):
            shown = path if target == os.path.abspath(path) else "%s (a link to %s)" % (path, target)
            raise ConfigError("%s %s: the directory does not exist" % (flag, shown))
        mode = None
    except OSError as exc:
        raise ConfigError("%s %s: %s" % (flag, path, fsio.why(exc)))
    try:  # another user's link, or their file in /tmp: they would choose what the report replaces
        fsio.check_writable(path)
    except fsio.Refused as exc:
        raise ConfigError("%s: %s" % (flag, fsio.why(exc)))
    except OSError as exc:
        raise ConfigError("%s %s: %s" % (flag, path, fsio.why(exc)))
    if mode is None:
        return
    if stat.S_ISDIR(mode):
        raise ConfigError("%s %s: is a directory" % (flag, path))
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        kind = "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file"
        raise ConfigError("%s %s: is %s; give a regular file, a FIFO or a character device" % (flag, path, kind))


def check_report(path: str, flag: str, config: Optional[str] = None) -> None:
    """check_output for every flag that writes a report, a page or a baseline, and also: never
    over a config, by its name, a link or another name of it (a hard link): this run's (config),
    $SMOKE_CONFIG's, or the ./smoke.toml or ./smoke.json a run without --config reads, which
    `--html smoke.json` would silently replace. (snapshot --output writes a config on purpose.)"""
    from checks.config import DEFAULT_FILES

    check_output(path, flag)
    for found in [config, os.environ.get("SMOKE_CONFIG")] + list(DEFAULT_FILES):
        if found and os.path.isfile(found) and (os.path.realpath(path) == os.path.realpath(found)
                                                or _file_id(path) == _file_id(found)):
            raise ConfigError("%s %s: is %s (%s): writing there would replace it; give %s a file of its own" % (
                flag, path, "the config file" if found == config else "a config a run without --config reads",
                found, flag))


def _file_id(path: str) -> Optional[Tuple[int, int]]:
    """(device, inode) of a regular file, or None (none there, or not a file: /dev/stdout)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


class Staged:
    """A report's file, opened and its space taken (stage()); write() puts the report there. What
    can go wrong with a path (no directory, no permission, a full disk, a FIFO nobody reads, a
    device that takes nothing) goes wrong in stage(), before the report is final."""

    def __init__(self, fd: Optional[int] = None, close: bool = False, replacement=None):
        self._fd, self._close, self._replacement = fd, close, replacement

    def write(self, data: bytes, stop=None, timeout: float = WRITE_TIMEOUT_S) -> None:
        """data to the file; a reader (a FIFO's) that does not take it within timeout is an OSError."""
        if self._replacement is not None:
            self._replacement.commit(data)
            return
        try:
            fsio.write_all(self._fd, data, timeout, stop)
        finally:
            self.abort()

    def abort(self) -> None:
        if self._replacement is not None:
            self._replacement.abort()
        elif self._close and self._fd is not None:
            os.close(self._fd)
            self._fd = None


def stage(path: str, size: int, stop=None, timeout: float = WRITE_TIMEOUT_S) -> Staged:
    """Open path as its type demands, for a report of about size bytes (OSError when it cannot
    take one): our own descriptor (/dev/stdout into `>> app.log`) is appended to, never renamed
    over; a FIFO or a character device is written through (a FIFO's reader must come within
    timeout); anything else is replaced atomically, its mode kept, through a link to its target.
    The rules of fsio hold: no other user's link is followed, and none of their files in a
    directory others can write is written (fsio.Refused)."""
    fd = _our_descriptor(path)
    if fd is not None:
        return Staged(fd)
    dir_fd, name = fsio.locate(path)
    try:
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and (stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode)):
            fsio.refuse_unsafe(dir_fd, name, path, replacing=False)
            fd = _open_through(dir_fd, name, stop, timeout)
            try:
                os.write(fd, b"")  # a device that takes nothing (/dev/full) says so now
            except BlockingIOError:
                pass
            except OSError:
                os.close(fd)
                raise
            return Staged(fd, close=True)
        if info is not None and stat.S_ISDIR(info.st_mode):  # found now, before the verdict, not by the rename
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file, a FIFO or a character device")
    finally:
        os.close(dir_fd)
    replacement = fsio.Replacement(path, stat.S_IMODE(info.st_mode) if info is not None else 0o644)
    replacement.reserve(size)
    return Staged(replacement=replacement)


def write_output(path: str, text: str) -> Optional[str]:
    """Write text to path as its type demands; the problem in one line, or None."""
    data = text.encode("utf-8", "replace")  # reportable() has cleaned the text: this cannot lose a report
    try:
        stage(path, len(data)).write(data)
    except OSError as exc:
        return "cannot write %s: %s" % (path, fsio.why(exc))
    return None


def _our_descriptor(path: str) -> Optional[int]:
    """The fd that path names when it leads, link by link, to an open descriptor: /dev/stdout,
    /dev/fd/N, /proc/self/fd/N (/proc/thread-self, /proc/PID/task/TID, spelt any way).
    Reopening one would start a new file offset, and resolving it would find the file behind
    it, which a rename would replace. Another process's descriptor is refused."""
    import re

    for _ in range(40):  # its directory resolved as the kernel does: a/link/.. is the link target's parent
        path = os.path.join(os.path.realpath(os.path.dirname(os.path.join(os.getcwd(), path))), os.path.basename(path))
        if path in ("/dev/stdin", "/dev/stdout", "/dev/stderr"):
            return ("/dev/stdin", "/dev/stdout", "/dev/stderr").index(path)
        found = re.fullmatch(r"/dev/fd/(\d+)|/proc/(self|thread-self|\d+)(/task/\d+)?/fd/(\d+)", path)
        if found:
            owner = found.group(2)
            if owner not in (None, "self", "thread-self", str(os.getpid())):
                raise ConfigError("--output %s: a descriptor of another process" % path)
            return int(found.group(1) or found.group(4))
        if not os.path.islink(path):
            return None
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return None


def _open_through(dir_fd: int, name: str, stop=None, timeout: float = WRITE_TIMEOUT_S) -> int:
    """A FIFO or a device opened to write, without blocking and within timeout: a FIFO whose
    reader does not come within it cannot hang us; given up at once when stop() says so."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(name, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW,
                           dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            if stop is not None and stop():
                raise OSError(errno.EINTR, "interrupted")
            fifo = stat.S_ISFIFO(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            if not fifo or time.monotonic() >= deadline:  # a FIFO nobody reads, or a terminal not there
                raise OSError(exc.errno, "no process opened the FIFO to read within %gs" % timeout
                              if fifo else "no such device here")
            time.sleep(0.05)
