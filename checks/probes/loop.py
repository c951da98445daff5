"""One share of a load: one process's connections driven by one poll loop (epoll itself where
there is one) with non-blocking sockets and a minimal HTTP/1.1 response reader (status line,
Content-Length, chunked, Connection: close), each latency a sample. load.py cuts a load in
shares and runs them, this process one and a forked worker each other.

What a request costs was measured (strace -c, cProfile of a worker) and cut: every read lands
in one buffer allocated once (a 256 KiB recv() allocated and freed its own each time: an
mmap, mremap and munmap per request); a response head byte for byte like the one before is
not parsed again; a closed load sends the next request at once on the connection that
answered; the loop waits on epoll itself, not through the selectors module.

Closed model: each connection sends its next request when the last one answered, until
`requests` are sent or `duration` has passed. Open model: requests are due at `rate` per
second on a fixed schedule, and a latency is measured from the time the request was *due*,
so a server that stalls cannot hide the requests it delayed (coordinated omission); every
request is due before the load's end, and those still waiting at the end are sent on the
first connection free, or being made for them, as long as they keep the schedule's pace
(not sent, only when no connection was free for them). Requests sent during `warmup`
seconds are not counted.
"""

from __future__ import annotations

import collections
import errno
import math
import os
import re
import selectors
import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Dict, List, Optional, Tuple


from checks.model import cut
from checks.probes.samples import Samples

MAX_HEAD = 64 * 1024  # a response head longer than this is an error ("bad response")
MAX_KINDS = 64  # error kinds kept apart; past them, "other errors"
NOT_SENT = "not sent: no connection free when due"
_RECV = 256 * 1024  # one buffer for every read of a worker: allocated once, its pages touched as used
_QUOTE, _QUOTE_WINDOW = 40, 512  # characters of a server's bytes an error quotes; bytes masked before the cut
_SPACED_LENGTH = re.compile(rb"\r\ncontent-length[ \t]+:")
# connect() errors that say this host ran out (descriptors, buffers, local ports): the tool's trouble
_OURS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL)
_monotonic = time.monotonic
_CATCH_UP_S = 0.1  # past an open load's end, how far its requests left may fall behind their schedule


class Load(collections.namedtuple("Load", "host port tls server_name insecure ca_file request connections "
                                          "requests duration rate warmup timeout max_errors max_latency_ms",
                                   defaults=(None, None))):
    """What to send (request: the bytes of one whole request) and how: closed when rate is
    None, else open at rate per second; stops at `requests` or after `duration` seconds, or
    early once more than max_errors have failed or one answer took over max_latency_ms."""

    __slots__ = ()


def schedule(load: Load) -> Tuple[int, int]:
    """An open load's (warmup requests, counted requests): those due within each span, counted
    in integers (request i is due at i / rate), so float drift adds or loses none; `requests`
    ends it sooner."""
    counted = math.ceil(round(load.rate * load.duration, 9))
    if load.requests is not None:
        counted = min(counted, load.requests)
    return math.ceil(round(load.rate * load.warmup, 9)), counted


_CONNECTING, _HANDSHAKE, _IDLE, _WRITING, _READING, _REFUSED, _CLOSED = (
    "connecting", "handshake", "idle", "writing", "reading", "refused", "closed")
_KNOWN_HEAD = 4096  # a response head up to this long is remembered: the next one like it is not parsed again


class _Selector:
    """select.epoll's calls (register, modify, unregister, poll, close) over the selectors
    module's best, by descriptor, where there is no epoll."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()

    def register(self, fd: int, events: int) -> None:
        self.selector.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self.selector.modify(fd, events)

    def unregister(self, fd: int) -> None:
        self.selector.unregister(fd)

    def poll(self, timeout: float, maxevents: int = -1) -> List[Tuple[int, int]]:
        return [(key.fd, events) for key, events in self.selector.select(timeout)]

    def close(self) -> None:
        self.selector.close()


def _poller():
    """(poller, readable, writable): epoll itself where there is one (no layer of Python over
    each wait), else _Selector."""
    import select
    if hasattr(select, "epoll"):
        return select.epoll(), select.EPOLLIN, select.EPOLLOUT
    return _Selector(), selectors.EVENT_READ, selectors.EVENT_WRITE


class _Conn:
    __slots__ = ("sock", "fd", "state", "due", "sent", "buffer", "need", "chunked", "close_after", "status",
                 "head_done", "out", "counted", "events", "kind", "dirty", "fresh")

    def __init__(self, sock, events: int):
        self.sock, self.fd, self.state, self.buffer = sock, sock.fileno(), _CONNECTING, bytearray()
        self.due = self.sent = 0.0
        self.need, self.chunked, self.close_after, self.status, self.head_done = 0, False, False, 0, False
        self.out, self.counted, self.kind = b"", True, "refused"
        self.events = events  # what the poller waits for on it (a change is a system call)
        self.dirty = False  # a response read in pieces: buffer, head_done, need ... to be reset
        self.fresh = False  # made, and no request sent on it yet


class Loop:
    """One worker's share: connections index, index + workers, ...; requests likewise (an
    open load's request i is this worker's when i % workers == index).

    The common case costs little: a whole response in one read, into one buffer for every
    connection (no allocation), whose head is the one before (byte for byte: not parsed again);
    in a closed load the next request goes out on the same connection at once. board: what
    every worker has seen (load.Board), posted to as the share runs."""

    def __init__(self, load: Load, index: int, workers: int, board, progress=None, ends=None,
                 redact=None):
        self.load, self.index, self.board, self.progress = load, index, board, progress
        self.ends, self.redact = ends, redact or (lambda text: text)
        self.slowest = 0.0
        self.connections = len(range(index, load.connections, workers))
        self.requests = None if load.requests is None else len(range(index, load.requests, workers))
        self.rate = load.rate
        if self.rate is not None:  # request i is due at counting_from + i / rate; warmup's are the negative i
            warm, counted = schedule(load)
            self.schedule = range(-warm + (index + warm) % workers, counted, workers)
            self.connections = min(self.connections, len(self.schedule))
        elif self.requests is not None:
            self.connections = min(self.connections, self.requests)
        self.next = 0  # the schedule's next request to send
        self.samples = Samples()
        self.add = self.samples.latencies.append
        self.poller, self.readable, self.writable = _poller()
        self.conns: Dict[int, _Conn] = {}  # by descriptor
        self.sent = self._warm = self.opening = 0  # opening: connections not yet ready to send
        self.halted = False  # aborted, or the tool's trouble: nothing more is sent
        self.gave_up = False  # open load, past its end: the requests left wait for no connection
        self.past: Optional[float] = None  # when the loop first saw the end with requests left
        self.past_sent = 0  # and those sent since
        self.idle: List[_Conn] = []
        self.family = socket.AF_INET6 if ":" in load.host else socket.AF_INET
        self.tls = _tls_context(load) if load.tls else None
        self.request, self.head_request = load.request, load.request.startswith(b"HEAD ")
        self.buffer = bytearray(_RECV)  # every read lands here first
        self.view = memoryview(self.buffer)
        self.known: Optional[tuple] = None  # (its length, the head, Content-Length, status, close after)

    def run(self) -> Samples:
        load = self.load
        start = _monotonic()
        self.counting_from = start + load.warmup
        self.stops = start + load.warmup + load.duration if load.duration is not None else None
        self.stops_at = self.stops if self.stops is not None else math.inf
        self.samples.started = time.time() + load.warmup
        try:
            for _ in range(self.connections if self.rate is None else min(self.connections, 4)):
                self.connect()
            last_expiry = last_progress = start
            poll, conns, ready = self.poller.poll, self.conns, self.ready
            most = max(1, self.connections)
            while not self.samples.trouble:  # aborted: what is in flight is still waited for
                now = _monotonic()
                if self.ends is not None and now >= self.ends:  # the run's deadline: nothing more is waited for
                    self.samples.deadline = True
                    break
                if not self.wants_more(now) and not self.busy():
                    break
                self.dispatch(now)
                # each descriptor's connection taken now: one closed meanwhile may be reused by the next
                for conn in [conns[fd] for fd, _ in poll(self.wait_time(now), most) if fd in conns]:
                    ready(conn)
                if now - last_expiry >= 0.05:  # every connection looked at: not on every turn
                    self.expire(_monotonic())
                    self.board.post(self.index, sum(self.samples.errors.values()), self.slowest, self.samples.count)
                    self.check_limits()
                    last_expiry = now
                if self.progress and now - last_progress >= 0.5:  # the whole load's, when it has workers
                    self.progress(int(self.board.totals()[2]) if self.board.slots > 1 else self.samples.count,
                                  now - start)
                    last_progress = now
        except Exception as exc:  # a bug of ours: said in the report, with the samples so far
            self.samples.trouble = "load worker failed: %s: %s" % (type(exc).__name__, exc)
        finally:
            for conn in list(self.conns.values()):
                conn.sock.close()
            self.poller.close()
        self.samples.ended = time.time()
        if self.rate is not None and not (self.samples.aborted or self.samples.trouble or self.samples.deadline):
            left = self.schedule[self.next:]  # due before the stop, never sent: no connection was free
            missed = len(left) - len(range(left.start, min(left.stop, 0), left.step))  # warmup's are not counted
            if missed:
                self.samples.errors[NOT_SENT] += missed
        self.samples.sort_runs()
        return self.samples

    def busy(self) -> bool:
        """Any request in flight (one past the stop is still waited for, within its timeout)."""
        return any(conn.state in (_WRITING, _READING) for conn in self.conns.values())

    def connect(self) -> None:
        """A new connection, its connect under way. A socket this host will not give (descriptors,
        memory, local ports) is trouble of the run: the load stops, the result is an error."""
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError as exc:
            return self.trouble(exc.errno, exc)
        conn = _Conn(sock, self.writable)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex((self.load.host, self.load.port))
            if code in _OURS:
                sock.close()
                return self.trouble(code)
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                conn.state, conn.kind = _REFUSED, _kind(code)  # said when the poller comes to it: no recursion
            self.poller.register(conn.fd, self.writable)
        except OSError as exc:
            sock.close()
            return self.trouble(exc.errno, exc)
        self.conns[conn.fd] = conn
        conn.due = _monotonic()
        self.opening += 1

    def trouble(self, code: Optional[int], exc: Optional[BaseException] = None) -> None:
        self.samples.trouble = "the load could not open a connection: %s (a limit of this host, not the server)" % (
            os.strerror(code) if code else exc)
        self.halted = True

    def count(self, kind: str) -> None:
        """One error of a kind; past MAX_KINDS kinds (a server sending a new garbage each time) one more."""
        errors = self.samples.errors
        errors[kind if kind in errors or len(errors) < MAX_KINDS else "other errors"] += 1

    def check_limits(self) -> None:
        """Stop sending once the whole load is past a limit (abort_on_fail)."""
        load = self.load
        if self.samples.aborted or (load.max_errors is None and load.max_latency_ms is None):
            return
        errors, slowest, _ = self.board.totals()
        if load.max_errors is not None and errors > load.max_errors:
            self.samples.aborted = "%d errors, more than the %d the thresholds allow" % (errors, load.max_errors)
        elif load.max_latency_ms is not None and slowest > load.max_latency_ms:
            self.samples.aborted = "an answer took %.3f ms, more than the %g ms the thresholds allow" % (
                slowest, load.max_latency_ms)
        self.halted = bool(self.samples.aborted)

    def wants_more(self, now: float) -> bool:
        """Whether a request may still be sent: not stopped, and the load not complete. An open
        load's requests were all due before its end. Past it, those left still go out on the
        first connection free as long as they keep the schedule's pace (keeps_pace: the loop
        itself late at the end, descheduled, and a server that keeps up gets them all), and on
        each connection that was being made for them once it is made; then no connection was
        free for the rest."""
        if self.halted:
            return False
        if self.rate is None:
            return now < self.stops_at and (self.requests is None or self.sent < self.requests + self._warm)
        if self.next >= len(self.schedule):
            return False
        if now < self.stops_at:
            return True
        if self.gave_up:
            return False
        if self.opening or self.keeps_pace(now) or any(conn.fresh for conn in self.idle):
            return True
        self.gave_up = True
        return False

    def keeps_pace(self, now: float) -> bool:
        """Past an open load's end: whether the requests left, sent since, went out at least as fast
        as the schedule asked for them, with _CATCH_UP_S to spare."""
        if self.past is None:
            self.past = now
        return now <= self.past + (self.past_sent + 1) * self.schedule.step / self.rate + _CATCH_UP_S

    def due(self, position: int) -> float:
        return self.counting_from + self.schedule[position] / self.rate

    def dispatch(self, now: float) -> None:
        """Send what is due on idle connections (closed: every idle one; open: the schedule)."""
        if not self.wants_more(now):
            return
        if self.rate is None:
            while self.idle and self.wants_more(now):
                self.send(self.idle.pop(), now, now)
            return
        while self.next < len(self.schedule):
            due = self.due(self.next)
            if due > now:
                return
            if not self.idle:  # due, waiting for a connection: its latency runs from its due time all the same
                if now < self.stops_at and self.opening < self.waiting(now) and len(self.conns) < self.connections:
                    self.connect()  # more connections, up to the limit, for a schedule they cannot keep
                return
            conn = self.idle.pop()
            if now >= self.stops_at and not self.keeps_pace(now) and not conn.fresh:  # past the end, behind
                fresh = [idle for idle in self.idle if idle.fresh]
                self.idle.append(conn)
                if not fresh:
                    return
                conn = fresh[-1]
                self.idle.remove(conn)
            self.send(conn, due, now)
            self.next += 1

    def waiting(self, now: float) -> int:
        """Requests of the schedule due by now and not sent."""
        left = self.schedule[self.next:]
        return len(range(left.start, min(left.stop, math.floor((now - self.counting_from) * self.rate) + 1),
                         left.step))

    def send(self, conn: _Conn, due: float, now: float) -> None:
        conn.due, conn.sent, conn.fresh = due, now, False
        if now >= self.stops_at:
            self.past_sent += 1
        conn.counted = due >= self.counting_from
        if not conn.counted:
            self._warm += 1
        self.sent += 1
        if conn.dirty:
            conn.buffer.clear()
            conn.head_done, conn.need, conn.chunked, conn.close_after, conn.dirty = False, 0, False, False, False
        if conn.events != self.readable:
            self.want(conn, self.readable)
        try:
            written = conn.sock.send(self.request)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as exc:
            if type(exc).__name__ not in ("SSLWantWriteError", "SSLWantReadError"):
                conn.state = _WRITING
                return self.fail(conn, _failure(exc))
            written = 0
        if written == len(self.request):
            conn.state = _READING
            return
        conn.out = self.request[written:]
        conn.state = _WRITING
        self.want(conn, self.writable)

    def wait_time(self, now: float) -> float:
        """How long the poll may wait: until the next request is due (one due already waits for a
        connection, that is for a socket event: no busy loop), the stop, or the deadline."""
        wait = 0.05
        if self.rate is not None and self.wants_more(now):
            due = self.due(self.next)
            if due > now:
                wait = min(wait, due - now)
        for limit in (self.stops, self.ends):
            if limit is not None and limit > now:
                wait = min(wait, limit - now)
        return wait

    def want(self, conn: _Conn, events: int) -> None:
        if conn.events != events:
            self.poller.modify(conn.fd, events)
            conn.events = events

    def ready(self, conn: _Conn) -> None:
        state = conn.state
        if state == _READING:
            return self.read(conn)
        if state == _WRITING:
            return self.write(conn)
        if state == _CONNECTING:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                return self.fail(conn, _kind(code))
            if self.tls:  # the wrapped socket is a new object on the same descriptor: still registered
                try:
                    conn.sock = self.tls.wrap_socket(conn.sock, server_hostname=self.load.server_name,
                                                     do_handshake_on_connect=False)
                except (OSError, ValueError) as exc:  # reset by the server before the handshake began
                    return self.fail(conn, _failure(exc))
                conn.state = _HANDSHAKE
                return self.handshake(conn)
            return self.become_idle(conn)
        if state == _HANDSHAKE:
            return self.handshake(conn)
        if state == _IDLE:  # the server closed a kept-alive connection, or sent what nobody asked
            self.drop(conn)
            return self.reconnect()
        if state == _REFUSED:
            self.fail(conn, conn.kind)

    def handshake(self, conn: _Conn) -> None:
        import ssl
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self.want(conn, self.readable)
        except ssl.SSLWantWriteError:
            return self.want(conn, self.writable)
        except (OSError, ValueError) as exc:
            return self.fail(conn, _failure(exc))
        self.become_idle(conn)

    def become_idle(self, conn: _Conn) -> None:
        self.opening -= 1
        conn.state, conn.fresh = _IDLE, True
        self.want(conn, self.readable)
        self.idle.append(conn)

    def write(self, conn: _Conn) -> None:
        try:
            written = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as exc:
            if type(exc).__name__ in ("SSLWantWriteError", "SSLWantReadError"):
                written = 0
            else:
                return self.fail(conn, _failure(exc))
        conn.out = conn.out[written:]
        if conn.out:
            return self.want(conn, self.writable)
        conn.state = _READING
        self.want(conn, self.readable)

    def read(self, conn: _Conn) -> None:
        try:
            got = conn.sock.recv_into(self.buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if type(exc).__name__ in ("SSLWantReadError", "SSLWantWriteError"):
                return
            return self.fail(conn, _failure(exc))
        if not got:
            return self.fail(conn, "closed mid-response" if conn.head_done or conn.buffer else "closed")
        if not conn.dirty:  # a response begins
            known = self.known
            if known is not None and got >= known[0] and self.buffer.startswith(known[1]):
                conn.status, conn.close_after = known[3], known[4]
                if got - known[0] >= known[2]:
                    return self.finish(conn)
                conn.dirty, conn.head_done, conn.need = True, True, known[2] - (got - known[0])
                return
            conn.dirty = True
        elif conn.head_done and not conn.chunked:  # its body: counted, never kept
            if conn.need < 0:
                return
            if got >= conn.need:
                return self.finish(conn)
            conn.need -= got
            return
        conn.buffer += self.view[:got]
        try:
            done = self.parse(conn)
        except ValueError as exc:
            return self.fail(conn, "bad response: " + self.quoted(exc))
        if done:
            self.finish(conn)

    def quoted(self, exc: ValueError) -> str:
        """What was wrong, and the server's bytes it names: secrets masked, then cut (model.cut's
        "…" lets the report mask a secret's start that the cut left), never the other way."""
        if len(exc.args) < 2:
            return str(exc.args[0]) if exc.args else "ValueError"
        text = bytes(exc.args[1][:_QUOTE_WINDOW]).decode("utf-8", "backslashreplace")
        return '%s "%s"' % (exc.args[0], cut(self.redact(text), _QUOTE))

    def parse(self, conn: _Conn) -> bool:
        """Whether the response in conn.buffer is whole; ValueError(what, the bytes) for one that
        is not HTTP/1.1. Interim answers (100 Continue, 103 Early Hints) are skipped. A final
        head with its length known is remembered (self.known): the same bytes, the same answer."""
        buffer = conn.buffer
        while not conn.head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise ValueError("a head over %d bytes" % MAX_HEAD)
                return False
            head = bytes(buffer[:end + 2]).lower()  # one search per header, not a loop over lines
            line_end = head.find(b"\r\n")
            parts = head[:line_end].split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"http/1.") or len(parts[1]) != 3 or \
                    not parts[1].isdigit() or not b"100" <= parts[1] <= b"599":
                raise ValueError("bad status line", buffer[:line_end])
            status = int(parts[1])
            if status == 101:
                raise ValueError("101 Switching Protocols, which no request asked for")
            raw = bytes(buffer[:end + 4]) if end + 4 <= _KNOWN_HEAD else None
            del buffer[:end + 4]
            if status < 200:
                continue  # not the answer yet: the final one follows
            conn.status = status
            close = parts[0] == b"http/1.0"
            connection = _header(head, b"\r\nconnection:")
            if connection is not None:
                close = connection == b"close" or (close and connection != b"keep-alive")
            conn.close_after = close
            conn.chunked = b"chunked" in (_header(head, b"\r\ntransfer-encoding:") or b"")
            conn.head_done = True
            if status in (204, 304) or self.head_request:
                conn.need = 0
                if raw is not None and not conn.chunked:
                    self.known = (len(raw), raw, 0, status, close)
                return True
            if not conn.chunked:
                lengths = _values(head, b"\r\ncontent-length:")
                if not lengths:  # to the end of the connection
                    if _SPACED_LENGTH.search(head):  # "Content-Length : 2" is no header (RFC 9112 5.1)
                        raise ValueError("whitespace before the colon of Content-Length")
                    conn.close_after, conn.need = True, -1
                    return False
                for length in lengths:
                    if not length.isdigit() or len(length) > 18:
                        raise ValueError("bad Content-Length", length)
                if len({int(length) for length in lengths}) > 1:  # which one is the body? (RFC 9112 6.3)
                    raise ValueError("conflicting Content-Length headers")
                conn.need = int(lengths[0])
                if raw is not None:
                    self.known = (len(raw), raw, conn.need, status, close)
        if conn.chunked:
            return _chunks_done(conn)
        if conn.need < 0:  # a body to the connection's end: nothing to keep
            buffer.clear()
            return False
        if len(buffer) >= conn.need:
            return True
        conn.need -= len(buffer)  # bodies are counted, never kept: a 10 GB answer costs no memory
        buffer.clear()
        return False

    def finish(self, conn: _Conn) -> None:
        now = _monotonic()
        latency = (now - conn.due) * 1000
        if conn.counted:
            if conn.status < 400:
                if latency > self.slowest:
                    self.slowest = latency  # max_ms is of the answers that count
                self.add(latency)
            else:
                self.count(str(conn.status))
                self.samples.error_latencies.append(latency)
        if conn.close_after:
            self.drop(conn)
            return self.reconnect()
        if self.rate is None and not self.halted and now < self.stops_at and \
                (self.requests is None or self.sent < self.requests + self._warm):
            return self.send(conn, now, now)  # closed: the next request at once, on the same connection
        conn.state = _IDLE
        self.idle.append(conn)

    def fail(self, conn: _Conn, kind: str) -> None:
        """A request, or a connection, that failed: an error when it counts (not in warmup, nor
        past the load's end), and the connection replaced (open load: when a request is due)."""
        state, now = conn.state, _monotonic()
        if state == _READING and conn.need < 0 and conn.head_done and kind.startswith("closed"):
            return self.finish(conn)  # the body ran to the connection's end: that was the response
        self.drop(conn)
        if state in (_WRITING, _READING):
            if conn.counted:
                self.count(kind)
            return self.reconnect()
        self.opening -= 1  # connecting, refused or in its handshake: the request it was for failed
        if self.rate is not None:  # the request due first, waiting for a connection, failed
            if not self.halted and self.next < len(self.schedule) and not self.gave_up and \
                    self.due(self.next) <= now:
                if self.schedule[self.next] >= 0:
                    self.count(kind)
                self.next += 1
            return
        if not self.wants_more(now):
            return
        if now >= self.counting_from:
            self.count(kind)
        else:
            self._warm += 1
        self.sent += 1
        time.sleep(0.001)  # a refusing server must not be hammered in a busy loop
        self.reconnect()

    def drop(self, conn: _Conn) -> None:
        if conn.state == _IDLE and conn in self.idle:
            self.idle.remove(conn)
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
            try:
                self.poller.unregister(conn.fd)
            except (KeyError, ValueError, OSError):
                pass
        conn.sock.close()
        conn.state = _CLOSED
        conn.dirty = False

    def reconnect(self) -> None:
        now = _monotonic()
        if self.wants_more(now) and len(self.conns) < self.connections and \
                (now < self.stops_at or self.keeps_pace(now)):  # past an open load's end: while it keeps pace
            self.connect()

    def expire(self, now: float) -> None:
        """Requests and connections past their timeout: a timeout each (when it counts)."""
        for conn in list(self.conns.values()):
            if conn.state in (_WRITING, _READING, _CONNECTING, _HANDSHAKE) and \
                    now - max(conn.sent, conn.due) > self.load.timeout:
                self.fail(conn, "timeout")


def _header(head: bytes, name: bytes) -> Optional[bytes]:
    """A header's value in a lower-cased head ("\r\nname:" included), stripped; None if absent."""
    at = head.find(name)
    if at < 0:
        return None
    start = at + len(name)
    return head[start:head.find(b"\r\n", start)].strip()


def _values(head: bytes, name: bytes) -> List[bytes]:
    """Every value of a header that may come more than once (two Content-Lengths disagree)."""
    values, at = [], head.find(name)
    while at >= 0:
        start = at + len(name)
        values.append(head[start:head.find(b"\r\n", start)].strip())
        at = head.find(name, start)
    return values


def _chunks_done(conn: _Conn) -> bool:
    """Whether a chunked body is whole; its data is skipped as it comes (conn.need: what is
    left of the chunk under way, with its CRLF), so no chunked body is kept in memory."""
    buffer = conn.buffer
    while True:
        if conn.need > 0:
            skipped = min(conn.need, len(buffer))
            del buffer[:skipped]
            conn.need -= skipped
            if conn.need:
                return False
        end = buffer.find(b"\r\n")
        if end < 0:
            if len(buffer) > 4096:
                raise ValueError("a chunk size line over 4096 bytes")
            return False
        size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or size_text.strip(b"0123456789abcdefABCDEF"):
            raise ValueError("bad chunk size", size_text)  # hex digits only: not "0x2", "-2", "+2" or "1_0"
        size = int(size_text, 16)
        if size == 0:  # the last chunk: then trailers, if any, and an empty line
            rest = bytes(buffer[end + 2:])
            return rest.startswith(b"\r\n") or b"\r\n\r\n" in rest
        del buffer[:end + 2]
        conn.need = size + 2


def _kind(code: int, exc: Optional[BaseException] = None) -> str:
    if code == errno.ECONNREFUSED:
        return "refused"
    if code in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    if code == errno.ETIMEDOUT:
        return "timeout"
    return os.strerror(code) if code else type(exc).__name__


def _failure(exc: BaseException) -> str:
    """The kind of a socket's failure: reset, refused, ..., or tls: REASON for one of TLS."""
    if "SSL" in type(exc).__name__ or isinstance(exc, ValueError):
        return "tls: %s" % (getattr(exc, "reason", None) or type(exc).__name__)
    return _kind(getattr(exc, "errno", None), exc)


def _tls_context(load: Load):
    import ssl
    context = ssl.create_default_context(cafile=load.ca_file)
    if load.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context

