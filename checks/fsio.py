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


class Replacement:
    """A new version of path, written to a temp file beside it and renamed over it only when
    whole and on disk: a reader never sees half of it, a crash leaves the old one.

    Made in two steps for a report that must be final before it is written: the temp file
    and its space first (reserve: a full disk or a read-only directory is found then),
    the bytes later (commit).
    """

    def __init__(self, path: str, mode: int = 0o644):
        import tempfile

        self.path, self.mode = path, mode
        self.fd, self.tmp = tempfile.mkstemp(prefix=".smoke-", suffix=".tmp", dir=os.path.dirname(path) or ".")

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
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def replace(path: str, data: bytes, mode: int = 0o644) -> None:
    """path replaced by data atomically (a temp file beside it, fsynced, renamed over it)."""
    Replacement(path, mode).commit(data)


def open_append(path: str, make_dirs: bool = False) -> int:
    """path opened to append (created 0644; its directory too with make_dirs); the fd. A FIFO
    or a socket is refused at once, not waited on: a log is a file (or /dev/null)."""
    if make_dirs:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    except OSError as exc:  # ENXIO: a FIFO with no reader
        if exc.errno == errno.ENXIO and stat.S_ISFIFO(os.stat(path).st_mode):
            raise _refuse(errno.EINVAL, "a FIFO, not a file")
        raise
    mode = os.fstat(fd).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        os.close(fd)
        raise _refuse(errno.EINVAL, "a FIFO, not a file")
    return fd


def append(path: str, data: bytes, make_dirs: bool = False, line: bool = False) -> None:
    """data appended in one write() and fsynced: a reader never sees half of it, and a power
    cut a moment later does not lose it. line: it is a line of a file of lines, so a last
    line left torn (no newline) is ended first."""
    fd = open_append(path, make_dirs)
    try:
        if line:
            size = os.fstat(fd).st_size
            if size and _byte_at(path, size - 1) != b"\n":
                data = b"\n" + data
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _byte_at(path: str, offset: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return os.pread(fd, 1, offset)
    finally:
        os.close(fd)


def create(path: str, data: bytes, mode: int = 0o600) -> None:
    """A new file of ours with data (O_EXCL: never one that is already there, nor a link)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
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
