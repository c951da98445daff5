"""Sinks: deliver a rendered report to a file named on the command line (--output).

What the path is decides how it is written. A regular file (or a new path) is
replaced atomically: a temp file beside it, fsynced, renamed over it, so a reader
never sees half a report. A symlink is followed and its target replaced, the link
kept. A FIFO or a character device (/dev/null, a terminal) is written through, never
replaced; so is one of our own descriptors (/dev/stdout, /dev/fd/3), whatever it is
open on. Anything else (a directory, a block device, a socket) is refused before the
run starts.
"""

from __future__ import annotations

import errno
import os
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Optional

from checks import ConfigError

WRITE_TIMEOUT_S = 10.0  # how long a FIFO's reader may take to drain the report


def check_output(path: str, flag: str = "--output") -> None:
    """Refuse, before anything runs, a path the report could not or must not be written to."""
    if not path.strip():
        raise ConfigError("%s: give a file name" % flag)
    if _our_descriptor(path) is not None:
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:  # a new file, or a symlink to one: its directory must exist
        target = os.path.realpath(path)
        if not os.path.isdir(os.path.dirname(target)):
            shown = path if target == os.path.abspath(path) else "%s (a link to %s)" % (path, target)
            raise ConfigError("%s %s: the directory does not exist" % (flag, shown))
        return
    except OSError as exc:
        raise ConfigError("%s %s: %s" % (flag, path, exc.strerror or exc))
    if stat.S_ISDIR(mode):
        raise ConfigError("%s %s: is a directory" % (flag, path))
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        kind = "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file"
        raise ConfigError("%s %s: is %s; give a regular file, a FIFO or a character device" % (flag, path, kind))


def write_output(path: str, text: str) -> Optional[str]:
    """Write text to path as its type demands; the problem in one line, or None."""
    data = text.encode("utf-8", "replace")  # reportable() has cleaned the text: this cannot lose a report
    try:
        fd = _our_descriptor(path)
        if fd is not None:  # /dev/stdout into `>> app.log`: append there, never rename over app.log
            write_all(fd, data, WRITE_TIMEOUT_S)
            return None
        mode = os.stat(path).st_mode if os.path.exists(path) else None
        if mode is not None and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            _write_through(path, data)
        else:
            _replace(os.path.realpath(path), data, stat.S_IMODE(mode) if mode is not None else 0o644)
    except OSError as exc:
        return "cannot write %s: %s" % (path, exc.strerror or exc)
    return None


def write_all(fd: int, data: bytes, timeout: float) -> None:
    """All of data to fd within timeout, whether fd blocks or not (a parent may have set
    O_NONBLOCK on our stdout: a plain write then stops at the pipe's 64 KiB)."""
    import select

    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    deadline = time.monotonic() + timeout
    view = memoryview(data)
    while view:
        if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            raise OSError("the reader took more than %gs" % timeout)
        try:
            view = view[os.write(fd, view[:65536]):]
        except BlockingIOError:
            continue


def _our_descriptor(path: str) -> Optional[int]:
    """The fd that path names when it leads, link by link, to one of ours: /dev/stdout,
    /dev/fd/N, /proc/self/fd/N. Reopening it would start a new file offset, and resolving
    it would find the file behind it, which a rename would replace."""
    for _ in range(40):
        for prefix in ("/dev/fd/", "/proc/self/fd/", "/proc/%d/fd/" % os.getpid()):
            if path.startswith(prefix) and path[len(prefix):].isdigit():
                return int(path[len(prefix):])
        if path in ("/dev/stdout", "/dev/stderr"):
            return 1 if path == "/dev/stdout" else 2
        if not os.path.islink(path):
            return None
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return None


def _replace(path: str, data: bytes, mode: int) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".smoke-", suffix=".tmp", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _write_through(path: str, data: bytes) -> None:
    """Non-blocking, with a deadline: a FIFO with no reader, or one that stops reading, cannot hang us."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO nobody has open for reading
            raise OSError(exc.errno, "no process is reading the FIFO")
        raise
    try:
        write_all(fd, data, WRITE_TIMEOUT_S)
    finally:
        os.close(fd)
