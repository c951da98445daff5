"""Load as a probe: many HTTP/1.1 requests over kept-alive raw sockets, each latency a sample.

http.client costs about 300 µs a request in Python, and threads share one interpreter
lock, so ten threads are no faster than one. Here one selector loop drives every
connection of a worker process with non-blocking sockets and a minimal response
reader (status line, Content-Length, chunked, Connection: close), and several worker
processes (one per CPU, at most one per connection) share the load. Each sends its
samples back as an array('d') of milliseconds: a million samples are 8 MB.

Closed model: each connection sends its next request when the last one answered,
until `requests` are sent or `duration` has passed. Open model: requests are due at
`rate` per second on a fixed schedule, and a latency is measured from the time the
request was *due*, so a server that stalls cannot hide the requests it delayed
(coordinated omission). Requests sent during `warmup` seconds are not counted.
"""

from __future__ import annotations

import array
import collections
import errno
import marshal
import os
import selectors
import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Dict, List, Optional, Tuple

MAX_CONNECTIONS = 10000
MAX_HEAD = 64 * 1024  # a response head longer than this is an error ("bad response")
_RECV = 256 * 1024


class Load(collections.namedtuple("Load", "host port tls server_name insecure ca_file request connections "
                                          "requests duration rate warmup timeout max_errors max_latency_ms",
                                   defaults=(None, None))):
    """What to send (request: the bytes of one whole request) and how: closed when rate is
    None, else open at rate per second; stops at `requests` or after `duration` seconds, or
    early once more than max_errors have failed or one answer took over max_latency_ms."""

    __slots__ = ()


class Samples:
    """The outcome of a run: latencies (ms, counted requests that answered 2xx/3xx), every
    other outcome by kind, and when the counted part began and ended."""

    def __init__(self):
        self.latencies = array.array("d")
        self.errors: Dict[str, int] = collections.Counter()
        self.error_latencies = array.array("d")  # answered, but with an error status
        self.started = self.ended = 0.0
        self.aborted = ""  # why the load stopped early, when it did
        self.ordered = False  # latencies sorted (each worker sorts its own share: no list of all of them)

    @property
    def count(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    def sort(self) -> None:
        self.latencies = array.array("d", sorted(self.latencies))
        self.ordered = True

    def merge(self, other: "Samples") -> None:
        """Add another's samples; two sorted shares stay sorted, merged without a list of floats."""
        if self.ordered and other.ordered or not self.latencies and other.ordered:
            import heapq
            merged = array.array("d")
            merged.extend(heapq.merge(self.latencies, other.latencies))
            self.latencies, self.ordered = merged, True
        else:
            self.latencies.extend(other.latencies)
            self.ordered = False
        self.error_latencies.extend(other.error_latencies)
        self.errors.update(other.errors)
        self.started = min(self.started or other.started, other.started or self.started)
        self.ended = max(self.ended, other.ended)
        self.aborted = self.aborted or other.aborted

    def dump(self) -> bytes:
        return marshal.dumps((self.latencies.tobytes(), self.error_latencies.tobytes(), dict(self.errors),
                              self.started, self.ended, self.aborted, self.ordered))

    @classmethod
    def load(cls, data: bytes) -> "Samples":
        samples = cls()
        (latencies, error_latencies, errors, samples.started, samples.ended, samples.aborted,
         samples.ordered) = marshal.loads(data)
        samples.latencies.frombytes(latencies)
        samples.error_latencies.frombytes(error_latencies)
        samples.errors.update(errors)
        return samples


def run(load: Load, workers: Optional[int] = None, progress=None) -> Samples:
    """The whole load, spread over worker processes (fork) when there is more than one CPU
    and more than one connection. progress(requests so far, seconds so far), when given,
    is called in this process about twice a second."""
    try:  # once, here: a name that does not resolve is one error, not one per connection
        family, _, _, _, address = socket.getaddrinfo(load.host, load.port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        from checks import CheckError
        raise CheckError("cannot resolve %s: %s" % (load.host, getattr(exc, "strerror", None) or exc))
    load = load._replace(host=address[0])
    if workers is None:
        workers = min(os.cpu_count() or 1, load.connections)
    if workers <= 1 or not hasattr(os, "fork"):
        return _Loop(load, 0, 1, _Board(1), progress).run()
    return _forked(load, workers, progress)


class _Board:
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


def _forked(load: Load, workers: int, progress=None) -> Samples:
    """Each worker a child process running its share; results back over a pipe each."""
    from checks.probes import proc

    children = []
    board = _Board(workers)
    arm = proc.die_with_parent()  # made here: it must know this process as the parent
    for index in range(workers):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run, answer, leave without running the parent's cleanup
            code = 0
            try:
                if arm:  # smoke.py killed with -9 takes its load with it
                    arm()
                os.close(read_end)
                try:
                    data = _Loop(load, index, workers, board).run().dump()
                except Exception as exc:  # said in the report, not lost with the worker
                    broken = Samples()
                    broken.errors["load worker failed: %s: %s" % (type(exc).__name__, exc)] += 1
                    data = broken.dump()
                with os.fdopen(write_end, "wb") as out:
                    out.write(data)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(write_end)
        children.append((pid, read_end))
    total = Samples()
    failed = 0
    started = time.monotonic()
    try:
        answers = {read_end: bytearray() for _, read_end in children}
        open_ends = set(answers)
        while open_ends:  # each child's answer, read as it comes; progress meanwhile
            import select
            for read_end in select.select(list(open_ends), [], [], 0.5)[0]:
                chunk = os.read(read_end, 1 << 20)
                if chunk:
                    answers[read_end] += chunk
                else:
                    open_ends.discard(read_end)
                    os.close(read_end)
            if progress:
                progress(int(board.totals()[2]), time.monotonic() - started)
        for pid, read_end in children:
            os.waitpid(pid, 0)
            if answers[read_end]:
                total.merge(Samples.load(bytes(answers[read_end])))
            else:
                failed += 1
    finally:
        import signal
        for pid, _ in children:  # after an interrupt: no load left running
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
    if failed:
        total.errors["load worker died"] += failed
    return total


class _Conn:
    __slots__ = ("sock", "state", "due", "sent", "buffer", "need", "chunked", "close_after", "status", "head_done",
                 "out", "counted", "events")

    def __init__(self, sock):
        self.sock, self.state, self.buffer = sock, "connecting", bytearray()
        self.due = self.sent = 0.0
        self.need, self.chunked, self.close_after, self.status, self.head_done = 0, False, False, 0, False
        self.out, self.counted = b"", True
        self.events = selectors.EVENT_WRITE  # what the selector waits for on it (a change is a system call)


class _Loop:
    """One worker's share: connections index, index + workers, ...; requests likewise."""

    def __init__(self, load: Load, index: int, workers: int, board: _Board, progress=None):
        self.load, self.index, self.board, self.progress = load, index, board, progress
        self.slowest = 0.0
        self.connections = len(range(index, load.connections, workers))
        self.requests = None if load.requests is None else len(range(index, load.requests, workers))
        self.rate = None if load.rate is None else load.rate / workers
        self.offset = index / load.rate if load.rate else 0.0  # workers' schedules interleave
        self.samples = Samples()
        self.selector = selectors.DefaultSelector()
        self.sent = 0
        self.idle: List[_Conn] = []
        self.tls = _tls_context(load) if load.tls else None
        self.head_request = load.request.startswith(b"HEAD ")

    def run(self) -> Samples:
        load = self.load
        start = time.monotonic()
        self.counting_from = start + load.warmup
        self.stops = start + load.warmup + load.duration if load.duration is not None else None
        self.next_due = start + self.offset
        try:
            for _ in range(self.connections if self.rate is None else min(self.connections, 4)):
                self.connect()
            self.samples.started = time.time() + load.warmup
            last_expiry = last_progress = start
            select, ready = self.selector.select, self.ready
            while self.selector.get_map():
                now = time.monotonic()
                if not self.wants_more(now) and not self.busy():
                    break
                self.dispatch(now)
                for key, _ in select(self.wait_time(now)):
                    ready(key.data)
                if now - last_expiry >= 0.05:  # every connection looked at: not on every turn
                    self.expire(time.monotonic())
                    self.board.post(self.index, sum(self.samples.errors.values()), self.slowest, self.samples.count)
                    self.check_limits()
                    last_expiry = now
                if self.progress and now - last_progress >= 0.5:
                    self.progress(self.samples.count, now - start)
                    last_progress = now
        finally:
            for key in list(self.selector.get_map().values()):
                key.fileobj.close()
            self.selector.close()
        self.samples.ended = time.time()
        if self.rate is not None and self.stops is not None and self.next_due < self.stops and \
                not self.samples.aborted:  # due, never sent: no connection was free (coordinated omission)
            missed = int((self.stops - self.next_due) * self.rate) + 1
            self.samples.errors["not sent: no connection free when due"] += missed
        self.samples.sort()
        return self.samples

    _warm = 0

    def busy(self) -> bool:
        """Any request in flight (one past the stop is still waited for, within its timeout)."""
        return any(key.data.state in ("writing", "reading") for key in self.selector.get_map().values())

    def connect(self) -> _Conn:
        sock = socket.socket(socket.AF_INET6 if ":" in self.load.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock)
        code = sock.connect_ex((self.load.host, self.load.port))
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            conn.state = "refused"
        self.selector.register(sock, selectors.EVENT_WRITE, conn)
        conn.due = time.monotonic()
        return conn

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

    def wants_more(self, now: float) -> bool:
        if self.samples.aborted or (self.stops is not None and now >= self.stops):
            return False
        return self.requests is None or self.sent < self.requests + self._warm

    def dispatch(self, now: float) -> None:
        """Send what is due on idle connections (closed: every idle one; open: the schedule)."""
        if self.rate is None:
            while self.idle and self.wants_more(now):
                self.send(self.idle.pop(), now, now)
            return
        while self.next_due <= now and self.wants_more(self.next_due):
            if not self.idle:
                if len(self.selector.get_map()) < self.connections:
                    self.connect()  # more connections, up to the limit, for a schedule they cannot keep
                return  # due, waiting for a connection: its latency runs from next_due all the same
            self.send(self.idle.pop(), self.next_due, now)
            self.next_due += 1.0 / self.rate

    def send(self, conn: _Conn, due: float, now: float) -> None:
        conn.due, conn.sent = due, now
        conn.counted = due >= self.counting_from
        if not conn.counted:
            self._warm += 1
        self.sent += 1
        conn.buffer.clear()
        conn.head_done, conn.need, conn.chunked, conn.close_after = False, 0, False, False
        conn.out = self.load.request
        conn.state = "writing"
        self.write(conn)

    def wait_time(self, now: float) -> float:
        wait = 0.05
        if self.rate is not None:
            wait = min(wait, max(0.0, self.next_due - now))
        if self.stops is not None:
            wait = min(wait, max(0.0, self.stops - now))
        return wait

    def want(self, conn: _Conn, events: int) -> None:
        if conn.events != events:
            self.selector.modify(conn.sock, events, conn)
            conn.events = events

    def ready(self, conn: _Conn) -> None:
        if conn.state == "connecting":
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                return self.fail(conn, _kind(code), reconnect=True)
            if self.tls:
                self.selector.unregister(conn.sock)  # the wrapped socket is a new object on the same fd
                conn.sock = self.tls.wrap_socket(conn.sock, server_hostname=self.load.server_name,
                                                 do_handshake_on_connect=False)
                self.selector.register(conn.sock, selectors.EVENT_WRITE, conn)
                conn.events = selectors.EVENT_WRITE
                conn.state = "handshake"
                return self.handshake(conn)
            return self.become_idle(conn)
        if conn.state == "handshake":
            return self.handshake(conn)
        if conn.state == "writing":
            return self.write(conn)
        if conn.state == "reading":
            return self.read(conn)
        if conn.state == "idle":  # the server closed a kept-alive connection, or sent what nobody asked
            self.drop(conn)
            self.reconnect()
        if conn.state == "refused":
            self.fail(conn, "refused", reconnect=True)

    def handshake(self, conn: _Conn) -> None:
        import ssl
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return self.want(conn, selectors.EVENT_READ)
        except ssl.SSLWantWriteError:
            return self.want(conn, selectors.EVENT_WRITE)
        except (OSError, ValueError) as exc:
            return self.fail(conn, "tls: %s" % getattr(exc, "reason", None) or type(exc).__name__, reconnect=True)
        self.become_idle(conn)

    def become_idle(self, conn: _Conn) -> None:
        conn.state = "idle"
        self.want(conn, selectors.EVENT_READ)
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
                return self.fail(conn, _kind(exc.errno, exc), reconnect=True)
        conn.out = conn.out[written:]
        if conn.out:
            return self.want(conn, selectors.EVENT_WRITE)
        conn.state = "reading"
        self.want(conn, selectors.EVENT_READ)

    def read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if type(exc).__name__ in ("SSLWantReadError", "SSLWantWriteError"):
                return
            return self.fail(conn, _kind(exc.errno, exc), reconnect=True)
        if not data:
            return self.fail(conn, "closed mid-response" if conn.head_done or conn.buffer else "closed",
                             reconnect=True)
        conn.buffer += data
        try:
            done = self.parse(conn)
        except ValueError as exc:
            return self.fail(conn, "bad response: %s" % exc, reconnect=True)
        if done:
            self.finish(conn)

    def parse(self, conn: _Conn) -> bool:
        """Whether the response in conn.buffer is whole; ValueError for one that is not HTTP."""
        buffer = conn.buffer
        if not conn.head_done:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise ValueError("a head over %d bytes" % MAX_HEAD)
                return False
            head = bytes(buffer[:end + 2]).lower()  # one search per header, not a loop over lines
            line_end = head.find(b"\r\n")
            parts = head[:line_end].split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"http/1.") or not parts[1].isdigit():
                raise ValueError("bad status line %r" % bytes(buffer[:min(line_end, 40)]))
            conn.status = status = int(parts[1])
            close = parts[0] == b"http/1.0"
            connection = _header(head, b"\r\nconnection:")
            if connection is not None:
                close = connection == b"close" or (close and connection != b"keep-alive")
            conn.close_after = close
            conn.chunked = b"chunked" in (_header(head, b"\r\ntransfer-encoding:") or b"")
            del buffer[:end + 4]
            conn.head_done = True
            if status in (204, 304) or 100 <= status < 200 or self.head_request:
                conn.need = 0
                return True
            if not conn.chunked:
                length = _header(head, b"\r\ncontent-length:")
                if length is None:  # to the end of the connection
                    conn.close_after, conn.need = True, -1
                    return False
                if not length.isdigit():
                    raise ValueError("bad Content-Length %r" % length[:20])
                conn.need = int(length)
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
        now = time.monotonic()
        latency = (now - conn.due) * 1000
        if conn.counted:
            if conn.status < 400:
                self.slowest = max(self.slowest, latency)  # max_ms is of the answers that count
                self.samples.latencies.append(latency)
            else:
                self.samples.errors[str(conn.status)] += 1
                self.samples.error_latencies.append(latency)
        if conn.close_after:
            self.drop(conn)
            self.reconnect()
        else:
            conn.state = "idle"
            self.idle.append(conn)

    def fail(self, conn: _Conn, kind: str, reconnect: bool) -> None:
        if conn.state in ("writing", "reading") and conn.counted:
            if conn.state == "reading" and conn.need < 0 and conn.head_done and kind.startswith("closed"):
                return self.finish(conn)  # the body ran to the connection's end: that was the response
            self.samples.errors[kind] += 1
        elif conn.state in ("connecting", "refused", "handshake"):
            self.samples.errors[kind] += 1
            self.sent += 1  # a connection that fails counts as a request that failed
            if self.rate is not None:  # it took a due request's place; the schedule opens the next one
                self.next_due += 1.0 / self.rate
                self.drop(conn)
                return
            time.sleep(0.001)  # a refusing server must not be hammered in a busy loop
        self.drop(conn)
        if reconnect and self.wants_more(time.monotonic()):
            self.reconnect()

    def drop(self, conn: _Conn) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        conn.state = "closed"

    def reconnect(self) -> None:
        if self.wants_more(time.monotonic()) and len(self.selector.get_map()) < self.connections:
            self.connect()

    def expire(self, now: float) -> None:
        """Requests past their timeout: a timeout each, and their connection replaced."""
        for key in list(self.selector.get_map().values()):
            conn = key.data
            if conn.state in ("writing", "reading", "connecting", "handshake") and \
                    now - max(conn.sent, conn.due) > self.load.timeout:
                kind = "timeout"
                if conn.state in ("writing", "reading") and not conn.counted:
                    self.drop(conn)
                    self.reconnect()
                    continue
                self.fail(conn, kind, reconnect=True)


def _header(head: bytes, name: bytes) -> Optional[bytes]:
    """A header's value in a lower-cased head ("\r\nname:" included), stripped; None if absent."""
    at = head.find(name)
    if at < 0:
        return None
    start = at + len(name)
    return head[start:head.find(b"\r\n", start)].strip()


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
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ValueError("bad chunk size %r" % size_text[:20])
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


def _tls_context(load: Load):
    import ssl
    context = ssl.create_default_context(cafile=load.ca_file)
    if load.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def request_bytes(method: str, host_header: str, target: str, headers: Dict[str, str],
                  body: Optional[bytes]) -> bytes:
    """One whole HTTP/1.1 request, kept-alive."""
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: " + host_header]
    lines += ["%s: %s" % (name, value) for name, value in headers.items() if name.lower() not in ("host",
                                                                                                 "content-length")]
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
