"""Load as a probe: many HTTP/1.1 requests over kept-alive raw sockets, each latency a sample.

http.client costs about 300 µs a request in Python, and threads share one interpreter
lock, so ten threads are no faster than one. The load is cut in shares, one per CPU (at
most one per connection), each driven by one poll loop (loop.py): this process runs the
first, a forked worker process each other one.

Each worker sorts its samples in runs and sends them back a run at a time, freeing each
as it goes, into the end of this process's array('d'): a million samples are 8 MB in all,
never a list of floats (see samples.py).
"""

from __future__ import annotations

import array
import os
import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Dict, List, Optional, Tuple

from checks.probes.loop import NOT_SENT, Load, Loop, schedule  # noqa: F401 (a load's Load, schedule and NOT_SENT)
from checks.probes.samples import Samples, ShareReader

MAX_CONNECTIONS = 10000
_FDS_RESERVED = 16  # stdio, the config, the report, the TLS files: outside the connections' share


def fd_fit(connections: int) -> Tuple[int, Optional[int]]:
    """The connections that fit in the file-descriptor limit (one socket each, per worker
    process, besides what is open now and a reserve), and that limit when it binds: past it
    every connection would fail with EMFILE, the tool's trouble and not the server's."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return connections, None
    if soft == resource.RLIM_INFINITY:
        return connections, None
    from checks import procfs
    used = procfs.open_fds() or _FDS_RESERVED
    workers = (os.cpu_count() or 1) if hasattr(os, "fork") else 1
    per_worker = soft - used - _FDS_RESERVED - 2 * workers  # the selector, the workers' pipes, the report
    fits = max(1, per_worker) * (workers if per_worker > 0 else 1)
    return (connections, None) if fits >= connections else (fits, soft)


def run(load: Load, workers: Optional[int] = None, progress=None, ends: Optional[float] = None,
        redact=None) -> Samples:
    """The whole load, spread over `workers` shares (one per CPU, at most one per connection): this
    process runs the first, a forked worker process each of the others. progress(requests so
    far, seconds so far), when given, is called in this process about twice a second. ends: the run's deadline
    (time.monotonic()), past which nothing is sent or waited for. redact: masks secrets in
    the server's bytes an error quotes, before the excerpt is cut."""
    try:  # once, here: a name that does not resolve is one error, not one per connection
        family, _, _, _, address = socket.getaddrinfo(load.host, load.port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        from checks import CheckError
        raise CheckError("cannot resolve %s: %s" % (load.host, getattr(exc, "strerror", None) or exc))
    load = load._replace(host=address[0])
    planned = sum(schedule(load)) if load.rate is not None else load.requests
    if planned is not None:  # one request needs one connection, not ten thousand
        load = load._replace(connections=max(1, min(load.connections, planned)))
    if workers is None:
        workers = min(os.cpu_count() or 1, load.connections)
    if workers <= 1 or not hasattr(os, "fork"):
        return Loop(load, 0, 1, Board(1), progress, ends, redact).run()
    return _forked(load, workers, progress, ends, redact)


class Board:
    """What every worker has seen so far (errors, slowest answer), in memory the forked
    workers share, so each can tell when the whole load can no longer meet a limit."""

    def __init__(self, workers: int):
        import mmap
        self.slots = workers
        self.memory = mmap.mmap(-1, 24 * workers)

    def post(self, index: int, errors: int, slowest: float, count: int) -> None:
        self.memory[24 * index:24 * index + 24] = array.array("d", (errors, slowest, count)).tobytes()

    def totals(self) -> Tuple[float, float, float]:
        """(errors, the slowest answer in ms, requests answered) over every worker."""
        values = array.array("d", self.memory[:24 * self.slots])
        return sum(values[0::3]), max(values[1::3]), sum(values[2::3])


_WORKER_GRACE_S = 5.0  # after a load's end and its last answer's timeout, for a worker to send its samples


def _forked(load: Load, workers: int, progress=None, ends=None, redact=None) -> Samples:
    """Share 0 run here, each other share by a child process, whose samples come back over a
    pipe each, read into the end of this process's own (a process fewer, and no copy of its
    share). A worker lost (killed, or unable to start) is trouble of the run: its share is missing."""
    import signal

    board = Board(workers)
    started = time.monotonic()
    children, troubles, readers = {}, [], {}
    open_ends = set()
    try:
        children, troubles = _start_workers(load, workers, board, ends, redact)
        readers = {read_end: ShareReader(read_end) for read_end in children.values()}
        open_ends = set(readers)
        total = Loop(load, 0, workers, board, progress, ends, redact).run()
        _collect(load, total, children, readers, open_ends, troubles, started, ends)
    finally:
        for read_end in open_ends:
            os.close(read_end)
        for pid in children:  # not reaped (after an interrupt): no load left running; a reaped pid may be reused
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
    if troubles:
        total.trouble = "; ".join(t for t in dict.fromkeys([total.trouble] + troubles) if t)
    return total


def _collect(load: Load, total: Samples, children: Dict[int, int], readers: Dict[int, ShareReader], open_ends,
             troubles: List[str], started: float, ends: Optional[float]) -> None:
    """The workers' shares read into the end of total's arrays, one share at a time, each as it
    comes; the workers reaped (children and open_ends keep what is left on an interrupt)."""
    import select
    import signal

    filling = None  # the pipe whose latencies are being read (one at a time: a share cut short is at the end)
    # past this, a worker that has not answered never will (stopped, wedged): it is given up
    given_up = set()
    give_up = started + load.warmup + load.duration + load.timeout + _WORKER_GRACE_S if load.duration else None
    if ends is not None:
        give_up = min(give_up, ends + _WORKER_GRACE_S) if give_up is not None else ends + _WORKER_GRACE_S
    while open_ends:  # each child's answer, read as it comes
        if give_up is not None and time.monotonic() > give_up:
            late = [pid for pid, read_end in children.items() if read_end in open_ends]
            given_up.update(late)
            for pid in late:
                os.kill(pid, signal.SIGKILL)
            troubles.append("%d load worker%s did not answer within %.1fs of the load's end (stopped or "
                            "wedged): %s samples are lost" % (len(late), "" if len(late) == 1 else "s",
                                                               _WORKER_GRACE_S + load.timeout,
                                                               "its" if len(late) == 1 else "their"))
            for read_end in list(open_ends):
                open_ends.discard(read_end)
                os.close(read_end)
                readers[read_end].drop(total)
            break
        wanted = [read_end for read_end in open_ends if filling in (None, read_end) or
                  not readers[read_end].filling]
        for read_end in select.select(wanted, [], [], 0.5)[0]:
            reader = readers[read_end]
            if reader.filling:
                if filling not in (None, read_end):
                    continue  # its turn comes when the one under way is whole
                filling = read_end
            try:
                more = reader.read(total)
            except (EOFError, ValueError, TypeError, OSError):  # not what a worker sends
                more = False
            if reader.complete or not more:
                filling = None if filling == read_end else filling
            if not more:
                reader.drop(total)  # cut short by its death: none of it counts
                open_ends.discard(read_end)
                os.close(read_end)
    for pid, read_end in list(children.items()):
        status = os.waitpid(pid, 0)[1]
        del children[pid]
        if not readers[read_end].complete and pid not in given_up:  # those are said already
            troubles.append("load worker %s: its samples are lost" % _ended(status))


def _start_workers(load: Load, workers: int, board: Board, ends, redact) -> Tuple[Dict[int, int], List[str]]:
    """({pid: its pipe's read end}, troubles): the worker processes, each running its share and
    answering with its samples; one that cannot start (a process or descriptor limit) is trouble."""
    from checks.probes import proc

    children: Dict[int, int] = {}
    troubles = []
    arm = proc.die_with_parent()  # made here: it must know this process as the parent
    for index in range(1, workers):  # share 0 is this process's
        try:
            read_end, write_end = os.pipe()
            pid = os.fork()
        except OSError as exc:  # a process or descriptor limit of this host
            troubles.append("cannot start load worker %d: %s: its share was not sent" % (index, exc.strerror or exc))
            break
        if pid == 0:  # the child: run, answer, leave without running the parent's cleanup
            code = 0
            try:
                if arm:  # smoke.py killed with -9 takes its load with it
                    arm()
                os.close(read_end)
                Loop(load, index, workers, board, None, ends, redact).run().send(write_end)
                os.close(write_end)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write_end)
        children[pid] = read_end
    return children, troubles


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return "died (signal %d)" % os.WTERMSIG(status)
    return "exited with code %d" % os.WEXITSTATUS(status) if os.WEXITSTATUS(status) else "exited without an answer"



def request_bytes(method: str, host_header: str, target: str, headers: Dict[str, str],
                  body: Optional[bytes]) -> bytes:
    """One whole HTTP/1.1 request, kept-alive."""
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + host_header]
    lines += ["%s: %s" % (name, value) for name, value in headers.items() if name.lower() not in ("host",
                                                                                                 "content-length")]
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
