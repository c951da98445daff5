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

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Optional

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
            fsio.write_all(fd, data, WRITE_TIMEOUT_S)
            return None
        mode = os.stat(path).st_mode if os.path.exists(path) else None
        if mode is not None and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            _write_through(path, data)
        else:
            fsio.replace(os.path.realpath(path), data, stat.S_IMODE(mode) if mode is not None else 0o644)
    except OSError as exc:
        return "cannot write %s: %s" % (path, fsio.why(exc))
    return None


def _our_descriptor(path: str) -> Optional[int]:
    """The fd that path names when it leads, link by link, to an open descriptor: /dev/stdout,
    /dev/fd/N, /proc/self/fd/N (/proc/thread-self, /proc/PID/task/TID, spelt any way).
    Reopening one would start a new file offset, and resolving it would find the file behind
    it, which a rename would replace. Another process's descriptor is refused."""
    import re

    for _ in range(40):
        path = os.path.normpath(os.path.join(os.getcwd(), path))
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


def _write_through(path: str, data: bytes) -> None:
    """Non-blocking, with a deadline: a FIFO whose reader does not come within the deadline,
    or stops reading, cannot hang us."""
    import time

    deadline = time.monotonic() + WRITE_TIMEOUT_S
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            fifo = stat.S_ISFIFO(os.stat(path).st_mode)
            if not fifo or time.monotonic() >= deadline:  # a FIFO nobody reads, or a terminal not there
                raise OSError(exc.errno, "no process opened the FIFO to read within %gs" % WRITE_TIMEOUT_S
                              if fifo else "no such device here")
            time.sleep(0.05)
    try:
        fsio.write_all(fd, data, WRITE_TIMEOUT_S)
    finally:
        os.close(fd)
