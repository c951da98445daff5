"""Network helpers shared by the socket-based kinds: a deadline guard and one-line errors.

Kept free of http.client and ssl, so a tcp-only run never pays for them.
"""

from __future__ import annotations

import errno
import itertools
import socket
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Optional

from checks.model import cut


class DeadlineGuard:
    """Shuts a socket down at the deadline, so a trickling peer cannot stretch a read."""

    def __init__(self, deadline: float):
        self.deadline, self.fired, self._entry = deadline, False, None

    def watch(self, sock) -> None:
        def fire():
            self.fired = True
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._entry = _WATCHDOG.add(self.deadline, fire)

    def cancel(self) -> None:
        if self._entry:
            self._entry[2] = None


class _Watchdog:
    """One thread that runs actions at their deadlines: a Timer per request would
    start a thread per request, and a thread start is not free under load."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list = []
        self._order = itertools.count()
        self._thread = None

    def add(self, deadline: float, action) -> list:
        import heapq  # here: a tcp-only run never needs the watchdog

        entry = [deadline, next(self._order), action]
        with self._cond:
            heapq.heappush(self._heap, entry)
            if self._thread is None:  # no thread to be had is a CheckError: this host's limit, not the target's
                from checks.lifecycle import start_thread
                self._thread = start_thread(self._run, "smoke-watchdog")
            self._cond.notify()
        return entry

    def _run(self) -> None:
        import heapq

        while True:
            with self._cond:
                while self._heap and self._heap[0][2] is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                action = heapq.heappop(self._heap)[2]
            if action:  # outside the lock: it may block on the socket
                action()


_WATCHDOG = _Watchdog()


def connect(address, timeout: float, source_address=None) -> socket.socket:
    """socket.create_connection, without the idna codec for an ASCII host name.

    CPython encodes every str host with the idna codec, whose import (with stringprep
    and unicodedata) costs a one-check run milliseconds; bytes skip it.
    """
    host, port = address[0], address[1]
    if isinstance(host, str) and host.isascii():
        host = host.encode("ascii")
    error = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect((sockaddr[0].encode("ascii"),) + sockaddr[1:])
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError("getaddrinfo returned no address for %r" % (address[0],))


def valid_host(host: str) -> bool:
    """A DNS name (IDN too), an IPv4 or an IPv6 address (without its brackets)."""
    if ":" in host:
        import ipaddress
        try:
            return ipaddress.ip_address(host.split("%", 1)[0]).version == 6
        except ValueError:
            return False
    try:  # the idna codec only when needed: importing it costs milliseconds
        labels = (host if host.isascii() else host.encode("idna").decode("ascii")).rstrip(".").split(".")
    except UnicodeError:
        return False
    # A DNS label: 1 to 63 letters, digits, - and _ (not first or last -). No regex: this runs on every start.
    return all(0 < len(label) < 64 and _LABEL_CHARS.issuperset(label) and "-" not in (label[0], label[-1])
               for label in labels)


# Errors of this host, not of the far side: the check could not be made, so they are `error`.
LOCAL_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_EXCERPT = 40
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def local_fault(exc: BaseException) -> Optional[str]:
    """Why exc is our own trouble (out of file descriptors or memory), or None if it is the target's."""
    if isinstance(exc, socket.gaierror) and exc.errno == getattr(socket, "EAI_SYSTEM", None):
        return "cannot resolve host: a system error (out of file descriptors or memory?)"
    if isinstance(exc, OSError) and exc.errno in LOCAL_ERRNOS:
        return "%s (a limit of this host, not the target's fault)" % (exc.strerror or exc)
    return None


def describe_error(exc: BaseException) -> str:
    """One line for a network failure, without the exception class soup."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, socket.gaierror):
        return "cannot resolve host: %s" % (exc.strerror or exc)
    client = sys.modules.get("http.client")  # only an http probe can have raised its errors
    if client and isinstance(exc, client.RemoteDisconnected):
        return "server closed the connection without a response"
    if client and isinstance(exc, client.IncompleteRead):
        return "connection closed after %d bytes of the body" % len(exc.partial)
    if client and isinstance(exc, client.BadStatusLine):
        return "bad status line: %r" % _excerpt(exc.line)
    if client and isinstance(exc, client.UnknownProtocol):
        return "unknown protocol in the status line: %r" % _excerpt(exc.version)
    if client and isinstance(exc, client.LineTooLong):
        return "the response has a line too long: %s" % exc
    if getattr(exc, "verify_message", None):  # ssl.SSLCertVerificationError
        return "TLS: certificate verify failed: %s (a private CA: ca_file; to skip the check: insecure, --insecure)" \
            % exc.verify_message
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    if type(exc).__name__.startswith("SSL"):
        return "TLS: %s" % (reason or exc)
    return str(reason or exc) or type(exc).__name__


def _excerpt(text) -> str:
    return cut(str(text).strip(), _EXCERPT)
