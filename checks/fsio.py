"""The one way smoke.py touches files: atomic replace, append, new private files, and
bounded reads.

A bottom layer: it imports nothing of ours. Every function raises OSError with a
strerror a person can read (why() gives it), and none can hang: a FIFO is opened
without blocking and refused where a file is meant, and whatever waits for another
process (a FIFO's reader or writer) has a deadline.
"""

from __future__ import annotations

import errno
import os
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Callable, Optional, Tuple, Union

WRITE_TIMEOUT_S = 10.0  # how long a reader (a FIFO's, our stdout's) may take to take what we write
READ_TIMEOUT_S = 10.0  # how long a writer (a FIFO, a pipe on stdin) may take to finish what we read
_CHUNK = 1 << 20


def why(exc: BaseException) -> str:
    """An OSError's reason in words, without the errno and path Python adds."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _refuse(errno_: int, text: str) -> OSError:
    return OSError(errno_, text)


def write_all(fd: int, data: bytes, timeout: Optional[float] = None,
              stop: Optional[Callable[[], bool]] = None) -> None:
    """All of data to fd, whether fd blocks or not (a parent may have set O_NONBLOCK on our
    stdout: a plain write then stops at the pipe's 64 KiB), within timeout seconds when one
    is given; given up at once when stop() says so (a signal came)."""
    view = memoryview(data)
    if timeout is None and stop is None:
        while view:
            view = view[os.write(fd, view):]
        return
    import select

    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
    while view:
        if stop is not None and stop():
            raise OSError(errno.EINTR, "interrupted")
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError(errno.ETIMEDOUT, "the reader took more than %gs" % timeout)
        if not poller.poll(min(0.2, left) * 1000):
            continue
        try:
            view = view[os.write(fd, view[:65536]):]
        except BlockingIOError:
            continue


class Refused(PermissionError):
    """A path smoke.py must not write through: another user could steer the write (a link of
    theirs, their file in a directory others can write, a directory that is not ours)."""


def _others_can_write(info: os.stat_result) -> bool:
    """Whether a user other than us and root can change a directory's entries: its owner
    when that is another user (they may chmod it), anyone when it is world-writable, and a
    group's members when it is group-writable, unless the group can hold no one but us."""
    mode = info.st_mode
    return not ours_or_roots(info) or bool(mode & 0o002) or (bool(mode & 0o020) and not _our_own_group(info.st_gid))


_OWN_GROUP = {}  # gid: whether it is our private group


def _our_own_group(gid: int) -> bool:
    """Whether gid is a group no other user is in: our user's private group (our group, named
    as our user), or, for root, group root; either with no other member, listed or by their
    primary group. A checkout root made with umask 002 (`git archive | tar x` keeps 0664) is
    as much root's as one in 0644. Group root is never ours for another user: OpenShift runs
    containers with gid 0. (A process root itself gave gid 0 that no /etc/group or /etc/passwd
    entry names cannot be seen from here: docs/guarantees.md says so.)"""
    if gid != os.getegid() or (gid == 0 and os.geteuid() != 0):
        return False
    if gid not in _OWN_GROUP:
        import grp  # here, not at start-up: only a group-writable file or directory of our group asks
        import pwd
        try:
            name, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(gid)
            _OWN_GROUP[gid] = group.gr_name == name and set(group.gr_mem) <= {name} and not any(
                user.pw_gid == gid and user.pw_name != name for user in pwd.getpwall())
        except KeyError:  # a user or group with no name: nothing says it is ours alone
            _OWN_GROUP[gid] = False
    return _OWN_GROUP[gid]


def ours_or_roots(info: os.stat_result) -> bool:
    return info.st_uid in (os.geteuid(), 0)


def written_by_others(info: os.stat_result) -> str:
    """How a user other than us and root could have written a file (or the entries of a
    directory), in words; "" when none could. What a file says is run as us (a config, a
    targets file) is read only when it is ""."""
    if not ours_or_roots(info):
        return "belongs to user %d" % info.st_uid
    if _others_can_write(info):
        return "can be written by other users (mode %04o)" % stat.S_IMODE(info.st_mode)
    return ""


def _changeable(info: os.stat_result) -> str:
    """Why a user other than us and root could add, remove or rename entries of a directory
    (its owner is another user, who may do so even in a sticky one; or others can write in
    it and it is not sticky), or "" when none can."""
    if not ours_or_roots(info):
        return "belongs to user %d, who may change it" % info.st_uid
    if _others_can_write(info) and not info.st_mode & stat.S_ISVTX:
        return "can be changed by other users (mode %04o, group %d, not sticky)" % (stat.S_IMODE(info.st_mode),
                                                                                   info.st_gid)
    return ""


def _open_dir(name: str, dir_fd: Optional[int]) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _link_refused(path: str, info: os.stat_result) -> Refused:
    return Refused(errno.EPERM, "%s is a link of user %d, not ours or root's: smoke.py neither writes nor reads "
                                "through another user's links" % (path, info.st_uid))


def locate(path: str, make: bool = False, mode: int = 0o700, follow: bool = True,
           steady: bool = False) -> Tuple[int, str]:
    """(an fd of the directory that holds path's last part, that part's name), found through
    links that are ours or root's only: another user's link (planted in /tmp, say) could send
    a write anywhere. A last part that is a trusted link is followed too (unless not follow),
    so the file behind it is the one written. Directories are opened one by one (never by
    name again): a directory renamed or swapped for a link meanwhile cannot redirect what
    follows. `..` is walked as the kernel walks it, from the directory a link led to
    (dir/link/.. is the link target's parent, not dir). With make, missing directories are
    made with mode. With steady, every directory looked in must be one no other user can
    change (Refused): then the path means the same directory later too, to a child given it
    and to our next open by name. The caller closes the fd."""
    parts = [part for part in (path if path.startswith("/") else os.getcwd() + "/" + path).split("/") if part]
    fd, links, walked = _open_dir("/", None), 0, "/"
    try:
        while parts:
            reason = steady and _changeable(os.fstat(fd))
            if reason:
                raise Refused(errno.EPERM, "%s %s: another user could swap what is below it (keep a state or run "
                                           "directory under directories only its user and root can change)"
                              % (walked, reason))
            name = parts.pop(0)
            if name in (".", ""):
                continue
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not parts or not make:
                    if parts:
                        raise
                    return fd, name
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:  # another run made it meanwhile: judged below as any found
                    pass
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            here = os.path.join(walked, name)
            if stat.S_ISLNK(info.st_mode) and (parts or follow):
                if not ours_or_roots(info):
                    raise _link_refused(here, info)
                links += 1
                if links > 40:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    os.close(fd)
                    fd, walked = _open_dir("/", None), "/"
                parts = [part for part in target.split("/") if part] + parts
                continue
            if not parts:
                return fd, name
            opened = _open_dir(name, fd)  # ".." too: the parent of where the walk is, links followed
            os.close(fd)
            fd, walked = opened, os.path.normpath(here)
        return fd, "."
    except BaseException:
        os.close(fd)
        raise


def open_steady(path: str) -> int:
    """path opened to read (non-blocking, close-on-exec) only through what no other user could
    have changed: no link of theirs and no directory they own or can change on the way (locate,
    steady), the last part no link either; so a link planted in /tmp, or a directory of theirs,
    cannot choose which of our files is read. A descriptor of ours (/dev/fd/N, /proc/self/fd/N,
    /dev/stdin: --config <(...)) is opened as it is. Refused, or OSError."""
    if path == "/dev/stdin" or path.startswith(("/dev/fd/", "/proc/self/fd/")) and path.rsplit("/", 1)[1].isdigit():
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    dir_fd, name = locate(path, steady=True)
    try:
        return os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def refuse_unsafe(fd: int, name: str, where: str, replacing: bool) -> None:
    """The rules for writing name in the directory fd: not in a directory another user can
    change entries of (theirs, or one others can write that is not sticky as /tmp is); not a
    file of another user's in a directory others can write (their /tmp file, which they
    control)."""
    directory = os.fstat(fd)
    reason = _changeable(directory)
    if reason:
        raise Refused(errno.EPERM, "%s is in a directory that %s: give a path in a directory of your own"
                      % (where, reason))
    try:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if _others_can_write(directory) and info.st_uid != os.geteuid():
        raise Refused(errno.EPERM, "%s belongs to user %d, in a directory others can write: smoke.py %s only its "
                                   "own files there" % (where, info.st_uid, "replaces" if replacing else "appends to"))


def check_writable(path: str) -> None:
    """Refused (or another OSError) now, before a run, when path could not be written by the rules."""
    fd, name = locate(path)
    try:
        refuse_unsafe(fd, name, path, True)
    finally:
        os.close(fd)


class Replacement:
    """A new version of path, written to a temp file beside it and renamed over it only when
    whole and on disk: a reader never sees half of it, a crash leaves the old one.

    Made in two steps for a report that must be final before it is written: the temp file
    and its space first (reserve: a full disk or a read-only directory is found then),
    the bytes later (commit). The rules of locate() and refuse_unsafe() hold: the rename
    replaces the name itself, never a link's target a stranger chose.
    """

    def __init__(self, path: str, mode: int = 0o644):
        self.mode, self.dir_fd, self.name = mode, *locate(path)
        self.fd = -1
        try:
            refuse_unsafe(self.dir_fd, self.name, path, True)
            for _ in range(100):
                self.tmp = ".smoke-%s.tmp" % os.urandom(6).hex()
                try:
                    self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                      0o600, dir_fd=self.dir_fd)
                    break
                except FileExistsError:
                    continue
        except BaseException:
            os.close(self.dir_fd)
            raise

    def reserve(self, size: int) -> None:
        """Take size bytes of disk now (ENOSPC here, not at commit)."""
        try:
            os.posix_fallocate(self.fd, 0, max(1, size))
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):  # a file system that cannot say
                return
            self.abort()
            raise
        except AttributeError:  # not on this platform (macOS)
            return

    def commit(self, data: bytes) -> None:
        try:
            os.lseek(self.fd, 0, os.SEEK_SET)
            write_all(self.fd, data)
            os.ftruncate(self.fd, len(data))
            os.fsync(self.fd)
            os.fchmod(self.fd, self.mode)
            os.close(self.fd)
            self.fd = -1
            os.rename(self.tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            self.tmp = None
        except BaseException:
            self.abort()
            raise
        os.close(self.dir_fd)
        self.dir_fd = -1

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.dir_fd >= 0:
            if self.tmp:
                try:
                    os.unlink(self.tmp, dir_fd=self.dir_fd)
                except OSError:
                    pass
            os.close(self.dir_fd)
            self.dir_fd = -1


def replace(path: str, data: bytes, mode: int = 0o644) -> None:
    """path replaced by data atomically (a temp file beside it, fsynced, renamed over it)."""
    Replacement(path, mode).commit(data)


def private_dir(path: str, make: bool = True) -> None:
    """path is a directory of ours alone (made 0700 with its missing parents when make): owned
    by us, not writable by others, and under directories no other user can change (steady).
    Refused otherwise: another user could plant what a run reads (a history, a lock), or swap
    the directory between our check and our use, or a child's."""
    fd, name = locate(path, make=make, steady=True)
    try:
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            if not make:
                raise
            try:
                os.mkdir(name, 0o700, dir_fd=fd)
            except FileExistsError:  # two runs making one state directory: the other was first
                pass
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            raise OSError(errno.ENOTDIR, "not a directory")
        if info.st_uid != os.geteuid():
            raise Refused(errno.EPERM, "%s belongs to user %d: a run's directory must be its own user's"
                          % (path, info.st_uid))
        if _others_can_write(info):
            raise Refused(errno.EPERM, "%s can be written by other users (mode %04o, group %d): a run's directory "
                                       "must be its own user's alone (chmod go-w)"
                          % (path, stat.S_IMODE(info.st_mode), info.st_gid))
    finally:
        os.close(fd)


def steady_dir(path: str) -> None:
    """Refused when a user other than us and root could change the directory path or one
    above it: a private_dir made in it later would be one they could swap."""
    fd, _ = locate(path.rstrip("/") + "/.", steady=True)  # the trailing "." makes path a directory looked in
    os.close(fd)


def open_lock(path: str) -> int:
    """path opened to read and write for an flock, readable by us alone (created 0600, one of
    ours made so): flock needs only a descriptor, so whoever can open a lock file can hold it
    and stop every run. Another user's file in a directory others can write is refused (a
    --lock in /tmp)."""
    fd, name = locate(path)
    try:
        refuse_unsafe(fd, name, path, False)
        lock = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600, dir_fd=fd)
    finally:
        os.close(fd)
    try:
        info = os.fstat(lock)
        if info.st_uid == os.geteuid() and stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
            os.fchmod(lock, stat.S_IMODE(info.st_mode) & 0o700)  # an older 0644 lock: others could open it
    except OSError:
        pass
    return lock


def open_append(path: str, make_dirs: bool = False, fresh: bool = False) -> int:
    """path opened to append (and read: a torn last line is looked for), created 0644 (its
    directory too with make_dirs; begun empty with fresh); the fd. A FIFO
    or a socket is refused at once, not waited on: a log is a file (or /dev/null). The rules
    of locate() and refuse_unsafe() hold."""
    fd, name = locate(path, make=make_dirs, mode=0o755)
    try:
        refuse_unsafe(fd, name, path, False)
        try:
            out = os.open(name, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW
                          | (os.O_TRUNC if fresh else 0), 0o644, dir_fd=fd)
        except OSError as exc:  # ENXIO: a FIFO with no reader
            if exc.errno == errno.ENXIO and stat.S_ISFIFO(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                raise _refuse(errno.EINVAL, "a FIFO, not a file")
            raise
    finally:
        os.close(fd)
    mode = os.fstat(out).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        os.close(out)
        raise _refuse(errno.EINVAL, "a FIFO, not a file")
    return out


def append(path: str, data: bytes, make_dirs: bool = False, line: bool = False) -> None:
    """data appended in one write() and fsynced: a reader never sees half of it, and a power
    cut a moment later does not lose it. line: it is a line of a file of lines, so a last
    line left torn (no newline) is ended first."""
    fd = open_append(path, make_dirs)
    try:
        if line:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) not in (b"\n", b""):  # b"": a device, /dev/null
                data = b"\n" + data
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def create(path: str, data: bytes, mode: int = 0o600) -> None:
    """A new file of ours with data (O_EXCL: never one that is already there, nor a link)."""
    dir_fd, name = locate(path, follow=False)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def _open_regular(path: str) -> int:
    """path opened to read, refusing what is not a regular file (a FIFO would block, /dev/zero
    never ends, a directory has no bytes)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return fd
    os.close(fd)
    if stat.S_ISDIR(mode):
        raise _refuse(errno.EISDIR, os.strerror(errno.EISDIR))
    raise _refuse(errno.EINVAL, "not a regular file")


def read_head(path: str, size: int) -> bytes:
    """The first size bytes of a regular file."""
    fd = _open_regular(path)
    try:
        return _read_up_to(fd, size)
    finally:
        os.close(fd)


def read_tail(path: str, size: int) -> Tuple[int, bytes]:
    """(the file's size, its last size bytes) of a regular file."""
    fd = _open_regular(path)
    try:
        total = os.fstat(fd).st_size
        os.lseek(fd, max(0, total - size), os.SEEK_SET)
        return total, _read_up_to(fd, min(total, size))
    finally:
        os.close(fd)


def _read_up_to(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_bounded(source: Union[str, int], cap: int, timeout: float = READ_TIMEOUT_S) -> bytes:
    """At most cap + 1 bytes (so that "too big" can be told) of a file, a FIFO or a pipe (a
    path, or an fd of ours such as 0); a FIFO or pipe within timeout seconds, so a writer
    that never finishes cannot hang us. A directory or a device is refused."""
    import select

    fd = source if isinstance(source, int) else os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _refuse(errno.EISDIR, os.strerror(errno.EISDIR))
        if stat.S_ISREG(mode):
            return _read_up_to(fd, cap + 1)
        if not isinstance(source, int) and not stat.S_ISFIFO(mode):
            raise _refuse(errno.EINVAL, "not a regular file or a pipe")
        chunks, size = [], 0
        deadline = time.monotonic() + timeout
        while size <= cap:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _refuse(errno.ETIMEDOUT, "nothing ended it within %gs" % timeout)
            if not select.select([fd], [], [], min(left, 0.5))[0]:
                continue
            try:
                chunk = os.read(fd, min(_CHUNK, cap + 1 - size))
            except BlockingIOError:
                time.sleep(0.01)  # a FIFO opened before its writer: read() says nothing yet
                continue
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        if not isinstance(source, int):
            os.close(fd)
