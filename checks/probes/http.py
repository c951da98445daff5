"""HTTP as a probe: one request value, sent once (fetch) or over kept-alive connections
(Client), against a deadline and a body cap; facts, never an exception for the far side.

Facts: status, headers (names lower-cased), body (text, up to max_body), bytes_read,
json (when the body is JSON; json_error says why not when it should be), latency_ms,
url (after redirects), redirects, and for https cert_days and cert_expires_at.
Also here: what every kind that speaks HTTP validates the same way (URLs, headers).
"""

from __future__ import annotations

import base64
import collections
import functools
import json
import re
import socket
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, Optional
from urllib.parse import urlsplit

from checks import CheckError, ConfigError, __version__
from checks.config import Fields
from checks.model import cut
from checks.net import DeadlineGuard, connect, describe_error, local_fault, valid_host
from checks.secrets import secret_field

MAX_BODY = 1024 * 1024
MAX_BODY_LIMIT = 1024 * MAX_BODY  # the most max_body may be: a body is held in memory
MAX_REDIRECTS = 50
_REDIRECTS = (301, 302, 303, 307, 308)
_PORTS = {"http": 80, "https": 443}
_CHUNK = 65536
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods and header names


class Request(collections.namedtuple("Request", "url method headers body follow_redirects max_redirects "
                                                "insecure ca_file max_body",
                                     defaults=("GET", {}, None, True, 5, False, None, MAX_BODY))):
    """One HTTP request as configured: what to send, and how far to follow and read."""

    __slots__ = ()


def load_request(fields) -> Request:
    """A Request from a config table's url, method, headers, auth, body or json, and limits."""
    url = ascii_url(fields.text("url"))
    check_url(url, fields.at("url"))
    method = fields.text("method", "GET").upper()
    if not TOKEN.fullmatch(method):
        raise ConfigError("%s: expected an HTTP method such as GET or POST, got %r" % (fields.at("method"), method))
    body, json_body = fields.get("body", (str,), None), fields.get("json", (dict, list, str, int, float, bool), None)
    if body is not None and json_body is not None:
        raise ConfigError("%s: give body or json, not both" % fields.at("json"))
    headers = request_headers(fields)
    if json_body is not None:
        body = json.dumps(json_body)
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    if not any(name.lower() == "user-agent" for name in headers):  # so a server's log can tell smoke runs apart
        headers["User-Agent"] = "smoke.py/" + __version__
    import http.client  # noqa: F401 -- now, not in the first probe, where 50 threads would queue on the import
    insecure = fields.flag("insecure", False)
    ca_file = fields.path("ca_file", None)
    if insecure and ca_file:
        raise ConfigError("%s: insecure skips verification, so a ca_file has no effect" % fields.at("ca_file"))
    return Request(url, method, headers, body, fields.flag("follow_redirects", True),
                   fields.integer("max_redirects", 5, 0, MAX_REDIRECTS), insecure, ca_file,
                   fields.integer("max_body", MAX_BODY, 1, MAX_BODY_LIMIT))


def request_headers(fields) -> Dict[str, str]:
    """headers, basic_auth and bearer_token as request headers (one Authorization at most).

    Shared with every kind that speaks HTTP, so each gets the same checks.
    """
    headers = fields.get("headers", (dict,), {})
    given: Dict[str, str] = {}  # lower-cased: header names are case-insensitive, so Host and host are one
    for name, value in headers.items():
        if not TOKEN.fullmatch(name):
            raise ConfigError("%s: %r is not a valid header name" % (fields.at("headers"), name))
        if given.setdefault(name.lower(), name) != name:
            raise ConfigError("%s: %r and %r are one header (names are case-insensitive): give it once"
                              % (fields.at("headers"), given[name.lower()], name))
        if not isinstance(value, str):
            raise ConfigError("%s.%s: expected a string" % (fields.at("headers"), name))
        _check_header_value(value, "%s.%s" % (fields.at("headers"), name))
    headers = dict(headers)
    basic = fields.get("basic_auth", (dict,), None)
    if basic is not None:
        basic_fields = Fields(basic, fields.at("basic_auth"))
        user, password = basic_fields.text("username"), basic_fields.text("password")
        basic_fields.done()
        token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        headers = dict(_without(headers, "authorization"), Authorization="Basic " + token)
    bearer = fields.text("bearer_token", None)
    if bearer is not None:
        _check_header_value(bearer, fields.at("bearer_token"))
        headers = dict(_without(headers, "authorization"), Authorization="Bearer " + bearer)
    return headers


def header_flags(values) -> Dict[str, str]:
    """--header 'Name: value' flags as a headers table."""
    headers = {}
    for header in values:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise ConfigError("--header %r: expected 'Name: value'" % header)
        same = [given for given in headers if given.lower() == name.strip().lower()]
        if same:  # one would replace the other, or both be sent
            raise ConfigError("--header %s: %s is given already (header names are case-insensitive): give it once"
                              % (name.strip(), same[0]))
        headers[name.strip()] = value.strip()
    return headers


def ascii_url(url: str) -> str:
    """A URL as it goes on the wire: an IDN host in its xn-- form, other non-ASCII
    characters percent-encoded (http://h/café -> /caf%C3%A9), as a browser sends them."""
    if url.isascii():
        return url
    from urllib.parse import quote, urlunsplit

    safe = "".join(chr(c) for c in range(0x21, 0x7f))  # keep every ASCII character as written
    try:
        parts = urlsplit(url)
        host = parts.hostname.encode("idna").decode("ascii") if parts.hostname else ""
        netloc = host + (":%d" % parts.port if parts.port else "")
        return urlunsplit((parts.scheme, netloc, quote(parts.path, safe), quote(parts.query, safe),
                           quote(parts.fragment, safe)))
    except (UnicodeError, ValueError):
        return url  # check_url says what is wrong with it


def check_url(url: str, where: str) -> None:
    """An http(s) URL a request can be made to, or a ConfigError saying what is wrong with it."""
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ConfigError("%s: a URL cannot contain spaces or control characters (encode them: %%20)" % where)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # http://[::1/
        raise ConfigError("%s: %s in %r" % (where, exc, url))
    if "@" in parts.netloc:  # the URL is shown in names, facts and these errors: no password in it
        raise ConfigError("%s: put credentials in basic_auth, not in the URL" % where)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("%s: expected an http:// or https:// URL, got %r" % (where, url))
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError("%s: bad port in %r" % (where, url))
    if not valid_host(parts.hostname):
        raise ConfigError("%s: %r is not a valid host name or address" % (where, parts.hostname))
    if parts.scheme == "https":
        needs_ssl(where)


def needs_ssl(where: str) -> None:
    try:
        import ssl  # noqa: F401 -- a Python built without OpenSSL has no ssl module
    except ImportError:
        raise ConfigError("%s: https needs Python's ssl module, which this Python (%s) lacks"
                          % (where, sys.executable or "python"))


def _check_header_value(value: str, where: str) -> None:
    # http.client would refuse it at request time, quoting the value (often a token) in its error.
    if "\r" in value or "\n" in value or "\0" in value:
        raise ConfigError("%s: a header value cannot contain a line break or NUL (a trailing newline from a file?)"
                          % where)
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:  # as http.client sends header values; a token is ASCII anyway
        raise ConfigError("%s: a header value must be Latin-1 text (HTTP): percent- or base64-encode it" % where)


def fetch(request: Request, timeout: float, client: Optional["Client"] = None) -> Dict[str, Any]:
    """Send request, following redirects, all within timeout seconds; facts, never an exception.

    With a client, connections are kept alive and reused; without, each is closed.
    """
    import http.client  # noqa: F401 -- before the clock starts: latency is the server's, not our import's
    from urllib.parse import urljoin

    deadline = time.monotonic() + timeout
    started = time.monotonic()
    redirects = 0
    url, method, body, headers = request.url, request.method, request.body, dict(request.headers)
    while True:
        facts = _request(url, method, headers, body, deadline, timeout, request, client)
        location = facts.get("headers", {}).get("location")
        if not (request.follow_redirects and facts.get("status") in _REDIRECTS and location):
            break
        if redirects >= request.max_redirects:
            facts["error"] = "too many redirects (more than %d), last to %s" % (request.max_redirects, location)
            break
        redirects += 1
        try:
            location = urljoin(url, location)
            urlsplit(location).port  # noqa: B018 -- raises on a bad port or bracket
        except ValueError as exc:  # the server's mistake: a fail, not ours
            facts["error"] = "cannot follow the redirect to %s: %s" % (cut(repr(location)[1:-1], 80), exc)
            break
        if not _same_site(url, location):
            headers = {k: v for k, v in headers.items() if not _credential(k)}
        url = location
        if (facts["status"] == 303 and method != "HEAD") or (facts["status"] in (301, 302) and method == "POST"):
            method, body = "GET", None
            headers = _without(headers, "content-type")
    facts["url"] = url
    facts["redirects"] = redirects
    if "error" not in facts:
        facts["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    return facts


class Client:
    """Keeps one connection per scheme, host and port alive between requests (perf sends
    thousands); not thread-safe: one per thread. close() when done."""

    def __init__(self):
        self._connections: Dict[tuple, Any] = {}

    def fetch(self, request: Request, timeout: float) -> Dict[str, Any]:
        return fetch(request, timeout, self)

    def connection(self, key: tuple, make):
        """The kept connection for key, else a new one from make(); (connection, reused)."""
        conn = self._connections.pop(key, None)
        return (conn, True) if conn is not None else (make(), False)

    def keep(self, key: tuple, conn) -> None:
        self._connections[key] = conn

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()


def _same_site(old: str, new: str) -> bool:
    """Whether credentials may follow a redirect: to the same scheme, host and port, or up to https."""
    a, b = urlsplit(old), urlsplit(new)
    try:
        a_port, b_port = a.port or _PORTS.get(a.scheme), b.port or _PORTS.get(b.scheme)
    except ValueError:
        return False
    upgrade = (a.scheme, a_port, b.scheme, b_port) == ("http", 80, "https", 443)
    return a.hostname == b.hostname and ((a.scheme, a_port) == (b.scheme, b_port) or upgrade)


def _credential(name: str) -> bool:
    """Headers that must not follow a redirect to another site: any secret-named one."""
    return secret_field(name) or name.lower() in ("proxy-authorization", "cookie")


def _without(headers: dict, name: str) -> dict:
    return {k: v for k, v in headers.items() if k.lower() != name}


def _request(url, method, headers, body, deadline, timeout, request, client) -> Dict[str, Any]:
    """One exchange. A kept-alive connection the server has closed meanwhile is retried once
    on a new one, as browsers do: the server's idle timeout is not the service failing."""
    parts = urlsplit(url)
    if parts.scheme not in _PORTS:
        return {"error": "cannot follow a redirect to %s" % url}
    try:
        port = parts.port
    except ValueError:
        return {"error": "bad port in URL %s" % url}
    key = (parts.scheme, parts.hostname, port, request.insecure, request.ca_file)
    path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    # surrogateescape: bytes that came from the environment as such go out as those bytes
    data = body.encode("utf-8", "surrogateescape") if body is not None else None
    for _ in range(2):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return {"error": "timed out after %gs" % timeout}
        make = functools.partial(_connection, parts.scheme, parts.hostname, port, remaining, request)
        conn, reused = client.connection(key, make) if client else (make(), False)
        try:
            facts, keep = _exchange(conn, url, method, path, headers, data, deadline, timeout, request.max_body,
                                    reused)
        except BaseException:  # our own fault (CheckError), or a signal: the socket must not leak
            conn.close()
            raise
        if facts is not None:
            if client and keep:
                client.keep(key, conn)
            else:
                conn.close()
            return facts
        conn.close()  # a reused connection found closed: once more, on a new one
    return {"error": "connection closed by the server before an answer"}


# What a server's answer or a connection can raise (http.client's HTTPException too); anything
# else (MemoryError, "can't start new thread", a CheckError) is this host's or ours: an error.
_FAR_SIDE = (OSError, ValueError)


def _connection(scheme, host, port, timeout, request):
    import http.client

    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                           context=_tls_context(request.insecure, request.ca_file))
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn._create_connection = connect  # http.client's hook for how it opens the socket
    return conn


def _exchange(conn, url, method, path, headers, data, deadline, timeout, max_body, reused):
    """(facts, whether the connection may be kept); (None, False) when a reused connection
    turned out closed before any answer came."""
    import http.client

    guard = DeadlineGuard(deadline)
    try:
        if conn.sock is None:
            conn.connect()
        else:
            conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
        guard.watch(conn.sock)
        facts = {}
        if url.startswith("https:"):
            facts.update(_cert_facts(conn.sock.getpeercert(binary_form=True)))
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        facts.update(exchange_facts(response, max_body, method))
        if guard.fired:  # the guard's shutdown reads as an end of body, not as an error
            return {"error": "timed out after %gs" % timeout}, False
        keep = "error" not in facts and not response.will_close
        response.close()  # read to its end: the connection may send the next request
        return facts, keep
    except Exception as exc:  # every failure of the far side becomes a fact
        if guard.fired or isinstance(exc, socket.timeout):
            return {"error": "timed out after %gs" % timeout}, False
        if reused and isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
            return None, False
        if local_fault(exc):
            raise CheckError("%s: %s" % (url, local_fault(exc)))
        if not isinstance(exc, _FAR_SIDE + (http.client.HTTPException,)):
            raise  # ours (a thread or a lock this host will not give, a bug): the runner makes it an error
        return {"error": describe_error(exc)}, False
    finally:
        guard.cancel()


def exchange_facts(response, max_body: int, method: str = "GET") -> Dict[str, Any]:
    """Status, headers and a capped body from an http.client response."""
    headers = {}
    for name, value in response.getheaders():
        name = name.lower()
        headers[name] = headers[name] + ", " + value if name in headers else value
    facts: Dict[str, Any] = {"status": response.status, "headers": headers}
    length = headers.get("content-length", "")
    if method != "HEAD" and length.isdigit() and int(length) > max_body:
        facts["error"] = "response body of %s bytes is over max_body (%d bytes)" % (length, max_body)
        return facts
    chunks, size = [], 0
    while method != "HEAD":
        chunk = response.read1(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > max_body:
            facts["error"] = "response body is over max_body (%d bytes)" % max_body
            return facts
        chunks.append(chunk)
    if response.length:  # read1 takes a close before Content-Length as the end; read() would not
        facts["error"] = "connection closed after %d of %s bytes of the body" % (size, length)
        return facts
    raw = b"".join(chunks)
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        raw = _decompress(raw, max_body)
        if raw is None:
            facts["error"] = "%s body is over max_body (%d bytes) once decompressed, or corrupt" % (encoding, max_body)
            return facts
    charset = response.headers.get_content_charset() or "utf-8"
    try:
        text = raw.decode(charset, errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    facts.update(body=text, bytes_read=size)
    looks_json = text.strip() and ("json" in headers.get("content-type", "") or text.lstrip()[:1] in ("{", "["))
    if looks_json:
        try:
            facts["json"] = json.loads(text)
        except ValueError as exc:
            facts["json_error"] = "body is not valid JSON: %s" % exc
        except RecursionError:
            facts["json_error"] = "body is not valid JSON: nested too deeply to parse"
    return facts


def _decompress(data: bytes, max_body: int) -> Optional[bytes]:
    """Undo gzip/deflate (a server may compress whatever it likes), never past max_body."""
    import zlib

    for wbits in (zlib.MAX_WBITS | 32, -zlib.MAX_WBITS):  # gzip or zlib headers, else raw deflate
        try:
            inflater = zlib.decompressobj(wbits)
            out = inflater.decompress(data, max_body + 1)
        except zlib.error:
            continue
        return out if len(out) <= max_body and not inflater.unconsumed_tail else None
    return None


@functools.lru_cache(maxsize=None)
def _tls_context(insecure: bool, ca_file: Optional[str]):
    """One context per setting: building one loads the CA store, ~25 ms of CPU each time."""
    import ssl

    try:
        context = ssl.create_default_context(cafile=ca_file)
    except OSError as exc:  # ssl.SSLError too: a file that holds no certificate
        raise CheckError("%s: %s" % ("ca_file %s" % ca_file if ca_file else "loading the system CA certificates",
                                     local_fault(exc) or exc.strerror or exc))
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _cert_facts(der: Optional[bytes]) -> Dict[str, Any]:
    if not der:
        return {}
    try:
        expires = _not_after(der)
    except (IndexError, ValueError):
        return {}
    return {"cert_days": round((expires - time.time()) / 86400, 1),
            "cert_expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))}


def _tlv(data: bytes, pos: int):
    """One DER element at pos: (tag, start of content, end of content)."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    return tag, pos, pos + length


def _not_after(der: bytes) -> float:
    """The certificate's notAfter as epoch seconds, read straight from its DER.

    getpeercert() gives the parsed dates only for a verified peer; reading the DER
    gives cert_days for `insecure` checks of self-signed certificates too.
    """
    import calendar

    _, cert, _ = _tlv(der, 0)
    _, pos, _ = _tlv(der, cert)          # TBSCertificate
    if der[pos] == 0xA0:                  # explicit version
        pos = _tlv(der, pos)[2]
    for _ in range(3):                    # serial, signature algorithm, issuer
        pos = _tlv(der, pos)[2]
    _, validity, _ = _tlv(der, pos)
    not_before_end = _tlv(der, validity)[2]
    tag, start, end = _tlv(der, not_before_end)
    text = der[start:end].decode("ascii")
    if tag == 0x17:                       # UTCTime, two-digit year
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    return calendar.timegm(time.strptime(text[:14], "%Y%m%d%H%M%S"))
