"""http: one request (following redirects if asked) against a deadline and a body cap.

Facts: status, headers (names lower-cased), body (text, up to max_body), bytes_read,
json (when the body is JSON; json_error says why not when it should be), latency_ms,
url (after redirects), redirects, and for https cert_days and cert_expires_at.
The request and its facts are probes.http's; this kind only names them.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict

from checks.probes import http

NAME = "http"
DEFAULT_EXPECT = ("status < 400",)
# all it can give: a condition on another fact is a typo, exit 2 at load
FACTS = ("status", "headers", "body", "bytes_read", "json",
         "json_error", "latency_ms", "url", "redirects", "cert_days", "cert_expires_at")


def load(fields) -> http.Request:
    return http.load_request(fields)


def target(request: http.Request) -> str:
    return "%s %s%s" % (request.method, request.url, " (TLS not verified)" if request.insecure else "")


def probe(request: http.Request, timeout: float, ctx) -> Dict[str, Any]:
    return http.fetch(request, timeout)
