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


def listeners() -> List[Tuple[str, int, int, int]]:
    """(address, port, socket inode, its user's uid) of every listening TCP socket this network
    namespace has (/proc/net/tcp and tcp6, state 0A), sorted; OSError when /proc/net/tcp cannot
    be read. tcp6 is absent where IPv6 is off. A line at a time: a busy host's table is megabytes."""
    import socket
    import sys

    found = set()
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            fh = open("/proc/net/" + name, "rb")
        except FileNotFoundError:
            if name == "tcp6":
                continue
            raise
        with fh:
            next(fh, None)  # the header
            for line in fh:
                fields = line.split()
                if len(fields) < 10 or fields[3] != b"0A":  # not LISTEN: a connection, ours or anyone's
                    continue
                try:
                    address, port = fields[1].split(b":")
                    raw = b"".join(int(address[i:i + 8], 16).to_bytes(4, sys.byteorder)  # words in host order
                                   for i in range(0, len(address), 8))
                    found.add((socket.inet_ntop(family, raw), int(port, 16), int(fields[9]), int(fields[7])))
                except (ValueError, OSError):
                    continue
    return sorted(found)


def own_addresses() -> List[Tuple[str, int]]:
    """(address, prefix length) of what this network namespace takes as its own, so that what
    is sent there stays on this host: IPv4's local routes (/proc/net/fib_trie's "host LOCAL":
    127.0.0.0/8, each interface's address, an AnyIP route) and IPv6's interface addresses
    (/proc/net/if_inet6, ::1 among them, each /128). A file that cannot be read gives nothing."""
    found = set()
    try:
        with open("/proc/net/fib_trie", "rb") as fh:
            leaf = None
            for line in fh:  # "|-- 127.0.0.1" then its routes, one a line: "/32 host LOCAL"
                words = line.split()
                if words[:1] == [b"|--"] and len(words) > 1:
                    leaf = words[1].decode("ascii", "replace")
                elif leaf and len(words) >= 3 and words[0][:1] == b"/" and words[1:3] == [b"host", b"LOCAL"]:
                    found.add((leaf, int(words[0][1:])))
    except (OSError, ValueError):
        pass
    found.update((address, 128) for address in interfaces())
    return sorted(found)


def interfaces() -> Dict[str, List[str]]:
    """{IPv6 address: the names of the interfaces that have it} (/proc/net/if_inet6): a
    link-local address (fe80::) is reached through its interface, fe80::1%eth0. A file that
    cannot be read gives nothing."""
    import socket

    found: Dict[str, List[str]] = {}
    try:
        with open("/proc/net/if_inet6", "rb") as fh:
            for line in fh:  # "fe8000000000000000fc00fffe000001 04 40 20 80 eth0"
                words = line.split()
                if len(words) == 6 and len(words[0]) == 32:
                    address = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(words[0].decode("ascii")))
                    found.setdefault(address, []).append(words[5].decode("utf-8", "surrogateescape"))
    except (OSError, ValueError):
        pass
    return found


def socket_owners(inodes, deadline: Optional[float] = None) -> Dict[int, int]:
    """{inode: the lowest pid holding that socket} for the inodes asked about, from each
    process's descriptors (links socket:[INODE]). A process that exits meanwhile, or whose
    descriptors we may not read (another user's, without root), is passed over; the walk
    ends at deadline (time.monotonic()) or once every socket has its owner."""
    import time

    wanted = {"socket:[%d]" % inode: inode for inode in inodes}
    owners: Dict[int, int] = {}
    try:
        pids = sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())
    except OSError:
        return owners
    for pid in pids:  # lowest first: the first holder found is the lowest pid (a pre-fork server's parent)
        if len(owners) == len(wanted) or (deadline is not None and time.monotonic() > deadline):
            break
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for i, fd in enumerate(fds):
            if i % 1024 == 1023 and deadline is not None and time.monotonic() > deadline:
                break
            try:
                inode = wanted.get(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except OSError:
                continue
            if inode is not None and inode not in owners:
                owners[inode] = pid
    return owners


def mounts() -> List[Tuple[str, str, str]]:
    """(source, mount point, file system type) of every mount this process sees, from
    /proc/self/mounts with its octal escapes (\\040 for a space) undone; OSError when it
    cannot be read."""
    import re

    def unescape(word: bytes) -> str:
        return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), word).decode("utf-8",
                                                                                         "surrogateescape")
    found = []
    with open("/proc/self/mounts", "rb") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) >= 3:
                found.append((unescape(fields[0]), unescape(fields[1]), unescape(fields[2])))
    return found
