"""tcp: connect to host:port, optionally send a line and read a banner.

Facts: connected, latency_ms (connect time), banner (when send or read_banner).
"""

from __future__ import annotations

import socket
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, Tuple

from checks import CheckError, ConfigError
from checks.model import cut
from checks.net import connect, describe_error, local_fault, valid_host

NAME = "tcp"
DEFAULT_EXPECT = ("connected == true",)
FACTS = ("connected", "latency_ms", "banner")  # all it can give: a condition on another is a typo, exit 2 at load
MAX_BANNER = 4096


def parse_address(text: str, where: str) -> Tuple[str, int]:
    """'host:port' or '[v6]:port' into (host, port)."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigError("%s: expected host:port such as 127.0.0.1:5432, got %r" % (where, text))
    if not valid_host(host) or (":" in host) != bracketed:  # an IPv6 address goes in brackets: [::1]:5432
        raise ConfigError("%s: %r is not a valid host name or address" % (where, host))
    return host, int(port)


def load(fields) -> Dict[str, Any]:
    host, port = parse_address(fields.text("address"), fields.at("address"))
    return {"host": host, "port": port, "send": fields.text("send", None),
            "read_banner": fields.flag("read_banner", False)}


def target(params) -> str:
    return "%s:%d" % (params["host"], params["port"])


def probe(params, timeout: float, ctx) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    try:
        sock = connect((params["host"], params["port"]), timeout)
    except socket.timeout:
        return {"connected": False, "error": "connect timed out after %gs" % timeout}
    except OSError as exc:
        if local_fault(exc):
            raise CheckError("%s: %s" % (target(params), local_fault(exc)))
        return {"connected": False, "error": describe_error(exc)}
    facts: Dict[str, Any] = {"connected": True, "latency_ms": round((time.monotonic() - started) * 1000, 1)}
    with sock:
        if params["send"] is not None or params["read_banner"]:
            try:
                if params["send"] is not None:
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    sock.sendall(params["send"].encode("utf-8", "surrogateescape") + b"\r\n")
                facts["banner"] = _read_line(sock, deadline)
            except socket.timeout:
                facts["error"] = "no banner within %gs" % timeout
            except OSError as exc:
                facts["error"] = "reading the banner: %s" % describe_error(exc)
    return facts


def _read_line(sock, deadline: float) -> str:
    """Up to the first newline (or MAX_BANNER bytes, or EOF), within the deadline."""
    data = b""
    while b"\n" not in data and len(data) < MAX_BANNER:
        if time.monotonic() >= deadline:  # a peer trickling a byte at a time gets no more time
            raise socket.timeout()
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(MAX_BANNER - len(data))
        if not chunk:
            break
        data += chunk
    line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
    return cut(line, len(line) - 1) if b"\n" not in data and len(data) >= MAX_BANNER else line
