"""Network helpers shared by the socket-based kinds: a deadline guard and one-line errors.

Kept free of http.client and ssl, so a tcp-only run never pays for them.
"""

import socket
import sys
import threading
import time


class DeadlineGuard:
    """Shuts a socket down at the deadline, so a trickling peer cannot stretch a read."""

    def __init__(self, deadline: float):
        self.deadline, self.fired, self._timer = deadline, False, None

    def watch(self, sock) -> None:
        def fire():
            self.fired = True
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), fire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer:
            self._timer.cancel()


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
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or getattr(exc, "strerror", None)
    if type(exc).__name__.startswith("SSL"):
        return "TLS: %s" % (reason or exc)
    return str(reason or exc) or type(exc).__name__
