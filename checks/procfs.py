"""/proc and prctl: what smoke.py reads of the processes on this host, in one place.

A bottom layer: it imports nothing of ours. Every reader returns None (or nothing) for a
process that is gone or hidden, and bytes that are not UTF-8 come back as surrogate
escapes, never as an exception: a process's name is anybody's choice.
"""

from __future__ import annotations

import functools
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Callable, Dict, Iterator, List, Optional, Tuple

MAX_ARGV = 65536  # bytes of a command line read


def stat(pid: int) -> Optional[List[bytes]]:
    """/proc/PID/stat after the command's name: [state, ppid, pgrp, session, ...]; None
    when it cannot be read (gone, or not Linux). The name is skipped from its last ")":
    a process may call itself ") S 1".
    """
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def processes() -> Iterator[Tuple[int, List[bytes]]]:
    """(pid, its stat fields) of every process /proc shows."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if entry.isdigit():
            fields = stat(int(entry))
            if fields is not None:
                yield int(entry), fields


def family() -> Dict[int, Tuple[int, int]]:
    """{pid: (its parent's pid, its start time)} of every process /proc shows, read lean
    (lifecycle reads it several times a second while a run's processes live)."""
    found = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fd = os.open("/proc/%s/stat" % entry, os.O_RDONLY)
            try:
                fields = os.read(fd, 4096).rsplit(b")", 1)[1].split()
            finally:
                os.close(fd)
            found[int(entry)] = (int(fields[1]), int(fields[19]))
        except (OSError, IndexError, ValueError):
            continue
    return found


def argv(pid: int, limit: int = MAX_ARGV) -> List[str]:
    """A process's command line as words (its first `limit` bytes); OSError when it cannot
    be read (FileNotFoundError: gone)."""
    with open("/proc/%d/cmdline" % pid, "rb") as fh:
        data = fh.read(limit)
    return [word.decode("utf-8", "surrogateescape") for word in data.split(b"\0") if word]


def comm(pid: int) -> str:
    """The process's own name (as `ps` shows it); OSError when it cannot be read."""
    with open("/proc/%d/comm" % pid, "rb") as fh:
        return fh.read().strip().decode("utf-8", errors="replace")


def parent(pid: int) -> int:
    """The parent's pid; 0 when it cannot be told."""
    fields = stat(pid)
    try:
        return int(fields[1]) if fields else 0
    except (ValueError, IndexError):
        return 0


def start_time(pid: int) -> Optional[int]:
    """When the process started, in clock ticks since boot (stat field 22): with the pid, who
    it is (a pid is reused; the pair is not)."""
    fields = stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def alive(pid: int) -> bool:
    """Running, not a zombie that has exited and only waits for its parent."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    fields = stat(pid)
    return fields is None or fields[0] not in (b"Z", b"X")


def children(of: Optional[int] = None) -> Iterator[Tuple[int, List[str]]]:
    """(pid, argv) of a process's children (ours by default)."""
    me = str(os.getpid() if of is None else of).encode()
    for pid, fields in processes():
        if fields[1] != me:
            continue
        try:
            yield pid, argv(pid)
        except OSError:
            continue


def in_session(sid: int) -> List[int]:
    """Every process of a session, whatever group each is in."""
    session = str(sid).encode()
    return [pid for pid, fields in processes() if len(fields) > 3 and fields[3] == session]


def ancestors() -> List[int]:
    """This process and every one above it, to pid 1."""
    found, pid = [os.getpid()], os.getppid()
    while pid > 1 and pid not in found:
        found.append(pid)
        pid = parent(pid)
        if not pid:
            break
    return found + [1]


def open_fds() -> Optional[int]:
    """How many descriptors this process has open; None where /proc cannot tell."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


@functools.lru_cache(maxsize=None)
def prctl() -> Optional[Callable[..., int]]:
    """Linux's prctl(2), or None elsewhere."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
