"""The http check kind against real servers on 127.0.0.1: facts, requests, auth, redirects, TLS, faults, config,
and what servers send back malformed.

Most cases use the shared fixture service. A few need answers it does not give (303 and
307 redirects, a redirect to another origin, a body cut short, a body with no length that
never ends), so a small local server below gives them, over real sockets too.
"""

import calendar
import json
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from checks import ConfigError
from checks.kinds import build_check
from conftest import ROOT, SMOKE, config, free_port, run_check, smoke
from fixtures.service import BASIC_PASSWORD, BASIC_USER, BEARER_TOKEN, CERT_FILE

SLACK_S = 1.5  # real clocks on a busy machine: generous, but far below any failure mode's natural length


def timed(**table):
    started = time.monotonic()
    result = run_check(kind="http", **table)
    return result, time.monotonic() - started


def assert_one_line_fail(result, *words):
    assert result.status == "fail", result
    assert result.message and "\n" not in result.message, result.message
    for word in words:
        assert word in result.message, result.message


def config_error(**table):
    table.setdefault("name", "t")
    table.setdefault("kind", "http")
    with pytest.raises(ConfigError) as caught:
        build_check(table, "health.checks[0]", "health")
    return str(caught.value)


def peak_rss_growth_mb(before):
    """How far the process's peak RSS rose past `before` (ru_maxrss: KiB on Linux, bytes on macOS)."""
    unit = 1024 * 1024 if sys.platform == "darwin" else 1024
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / unit



# --- a local server for what the fixture service does not do ------------------------------

class Odd(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/to":        # /to?code=303&url=... redirects there
            self.answer(int(query["code"]), b"", {"Location": query["url"]})
        elif parts.path == "/echo":
            self.answer(200, json.dumps({
                "method": self.command, "body": body.decode(),
                "headers": {k.lower(): v for k, v in self.headers.items()}}).encode())
        elif parts.path == "/short":   # promises 100 bytes, sends 10, closes
            self.close_connection = True
            self.answer(200, b"0123456789", {"Content-Length": "100"})
        elif parts.path == "/stream":  # no length: the body ends at close, which never comes
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(16384):  # 1 GiB at most, in case the client keeps reading
                    self.wfile.write(chunk)
            except OSError:
                pass

    def answer(self, status, body, headers=None):
        headers = dict(headers or {})
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(body)))
        headers.setdefault("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = handle_any


@pytest.fixture(scope="module")
def odd():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Odd)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def to(odd, code, url):
    return "%s/to?%s" % (odd, urlencode({"code": code, "url": url}))


# --- facts ---------------------------------------------------------------------------------

def test_facts_of_a_healthy_json_endpoint(service):
    result = run_check(kind="http", url=service + "/health",
                       expect=["status == 200", "json.status == healthy", "json.agents_loaded >= 15"])
    assert result.status == "pass", result.message
    facts = result.facts
    assert facts["status"] == 200
    assert facts["json"] == {"status": "healthy", "agents_loaded": 15}
    assert json.loads(facts["body"]) == facts["json"]
    assert facts["bytes_read"] == len(facts["body"].encode()) == int(facts["headers"]["content-length"])
    assert facts["url"] == service + "/health"
    assert facts["redirects"] == 0
    assert isinstance(facts["latency_ms"], float) and 0 <= facts["latency_ms"] < 5000
    assert "json_error" not in facts and "error" not in facts


def test_header_names_are_lower_cased_and_reachable_in_conditions(service):
    result = run_check(kind="http", url=service + "/health",
                       expect=["headers.content-type contains json", "headers.Server contains smoke-fixture"])
    assert result.status == "pass", result.message
    headers = result.facts["headers"]
    assert headers and all(name == name.lower() for name in headers)
    assert headers["content-type"] == "application/json"


def test_latency_measures_the_server(service):
    result = run_check(kind="http", url=service + "/delay/150", expect=["latency_ms >= 150"])
    assert result.status == "pass", result.message
    assert result.facts["latency_ms"] < 150 + SLACK_S * 1000


def test_text_body_has_no_json_facts(service):
    result = run_check(kind="http", url=service + "/-/healthy", expect=["body contains Healthy"])
    assert result.status == "pass", result.message
    assert "json" not in result.facts and "json_error" not in result.facts


def test_invalid_json_sets_json_error_and_explains_a_json_condition(service):
    result = run_check(kind="http", url=service + "/fault/invalid-json", expect=["json.status == healthy"])
    assert "json" not in result.facts
    assert result.facts["json_error"].startswith("body is not valid JSON")
    assert_one_line_fail(result, "json.status", "body is not valid JSON")


def test_invalid_json_still_passes_default_expectations(service):
    # Only a condition about json needs JSON; the default is about the status.
    assert run_check(kind="http", url=service + "/fault/invalid-json").status == "pass"


def test_an_empty_json_typed_body_is_not_a_json_error(service):
    head = run_check(kind="http", url=service + "/health", method="HEAD")
    assert head.status == "pass" and head.facts["body"] == "" and head.facts["bytes_read"] == 0
    assert "json_error" not in head.facts
    redirect = run_check(kind="http", url=service + "/redirect/0", follow_redirects=False)
    assert "json_error" not in redirect.facts


# --- requests --------------------------------------------------------------------------------

def test_method_headers_and_body_reach_the_server(service):
    result = run_check(kind="http", url=service + "/echo?x=1", method="put",
                       headers={"X-Smoke": "yes", "Content-Type": "text/plain"}, body="hello",
                       expect=["json.method == PUT", "json.path == /echo?x=1", "json.body == hello",
                               "json.headers.x-smoke == yes", "json.headers.content-type == text/plain"])
    assert result.status == "pass", result.message


def test_json_body_is_serialised_with_its_content_type(service):
    result = run_check(kind="http", url=service + "/echo", method="POST", json={"a": [1, 2], "b": "c"},
                       expect=["json.method == POST", "json.headers.content-type == application/json"])
    assert result.status == "pass", result.message
    assert json.loads(result.facts["json"]["body"]) == {"a": [1, 2], "b": "c"}


def test_basic_auth(service):
    good = run_check(kind="http", url=service + "/auth/basic",
                     basic_auth={"username": BASIC_USER, "password": BASIC_PASSWORD}, expect=["json.auth == ok"])
    assert good.status == "pass", good.message
    bad = run_check(kind="http", url=service + "/auth/basic", basic_auth={"username": BASIC_USER, "password": "nope"})
    assert_one_line_fail(bad, "status: expected < 400, got 401")
    assert_one_line_fail(run_check(kind="http", url=service + "/auth/basic"), "401")


def test_bearer_auth(service):
    good = run_check(kind="http", url=service + "/auth/bearer", bearer_token=BEARER_TOKEN, expect=["status == 200"])
    assert good.status == "pass", good.message
    bad = run_check(kind="http", url=service + "/auth/bearer", bearer_token="wrong-token")
    assert_one_line_fail(bad, "status: expected < 400, got 401")
    assert_one_line_fail(run_check(kind="http", url=service + "/auth/bearer"), "401")


def test_a_bearer_token_never_reaches_the_result(service):
    token = "not-the-s3cret-token-9f2c"
    for url in (service + "/auth/bearer", "http://127.0.0.1:%d/" % free_port()):
        result = run_check(kind="http", url=url, bearer_token=token)
        assert result.status == "fail"
        assert token not in json.dumps(result.to_dict())


def test_a_line_break_in_a_token_is_a_config_error_that_does_not_quote_it():
    message = config_error(url="http://127.0.0.1:1/", bearer_token="s3cret-token\n")
    assert message.startswith("health.checks[0].bearer_token:")
    assert "s3cret-token" not in message
    message = config_error(url="http://127.0.0.1:1/", headers={"X-Key": "abc\r\nX-Evil: 1"})
    assert message.startswith("health.checks[0].headers.X-Key:")


# --- redirects --------------------------------------------------------------------------------

def test_redirects_are_followed_and_counted(service):
    result = run_check(kind="http", url=service + "/redirect/2", expect=["status == 200", "redirects == 3"])
    assert result.status == "pass", result.message
    assert result.facts["url"] == service + "/health"
    assert result.facts["json"]["status"] == "healthy"


def test_follow_redirects_false_gives_the_302(service):
    result = run_check(kind="http", url=service + "/redirect/2", follow_redirects=False,
                       expect=["status == 302", "headers.location == /redirect/1", "redirects == 0"])
    assert result.status == "pass", result.message
    assert_one_line_fail(run_check(kind="http", url=service + "/redirect/2", follow_redirects=False,
                                   expect=["status == 200"]), "status: expected == 200, got 302")


def test_max_redirects_bounds_the_chain(service):
    assert run_check(kind="http", url=service + "/redirect/1", max_redirects=2).status == "pass"
    result = run_check(kind="http", url=service + "/redirect/2", max_redirects=2)
    assert_one_line_fail(result, "too many redirects", "more than 2")
    assert result.facts["redirects"] == 2


def test_post_becomes_get_on_303(service, odd):
    result = run_check(kind="http", url=to(odd, 303, service + "/echo"), method="POST", json={"a": 1},
                       expect=["json.method == GET", "json.body == ''", "redirects == 1"])
    assert result.status == "pass", result.message
    assert "content-type" not in result.facts["json"]["headers"]
    assert result.facts["url"] == service + "/echo"


def test_post_stays_post_on_307(service, odd):
    result = run_check(kind="http", url=to(odd, 307, service + "/echo"), method="POST", body="kept",
                       expect=["json.method == POST", "json.body == kept"])
    assert result.status == "pass", result.message


def test_authorization_follows_a_redirect_only_within_its_origin(service, odd):
    same = run_check(kind="http", url=to(odd, 302, odd + "/echo"), bearer_token=BEARER_TOKEN)
    assert same.facts["json"]["headers"]["authorization"] == "Bearer " + BEARER_TOKEN
    other = run_check(kind="http", url=to(odd, 302, service + "/echo"), bearer_token=BEARER_TOKEN,
                      headers={"X-Kept": "yes", "X-Api-Key": "k-123456", "Cookie": "s=1", "Private-Token": "t-1234"})
    assert other.status == "pass", other.message
    sent = other.facts["json"]["headers"]
    assert not {"authorization", "x-api-key", "cookie", "private-token"} & set(sent)
    assert sent["x-kept"] == "yes"


# --- TLS --------------------------------------------------------------------------------------

def test_tls_verification_fails_against_a_self_signed_server(tls_service):
    result = run_check(kind="http", url=tls_service + "/health")
    assert_one_line_fail(result, "TLS: ", "certificate verify failed")


def test_tls_passes_with_the_ca_file_and_reports_the_certificate(tls_service):
    result = run_check(kind="http", url=tls_service + "/health", ca_file=CERT_FILE,
                       expect=["status == 200", "cert_days > 30"])
    assert result.status == "pass", result.message
    assert 36000 <= result.facts["cert_days"] <= 36600
    expires = calendar.timegm(time.strptime(result.facts["cert_expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs((expires - time.time()) / 86400 - result.facts["cert_days"]) < 0.2


def test_cert_expiry_matches_what_ssl_itself_parses(tls_service):
    context = ssl.create_default_context(cafile=CERT_FILE)
    parts = urlsplit(tls_service)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            not_after = ssl.cert_time_to_seconds(tls.getpeercert()["notAfter"])
    result = run_check(kind="http", url=tls_service + "/health", ca_file=CERT_FILE)
    assert result.facts["cert_expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after))


def test_insecure_passes_and_still_reports_cert_days(tls_service):
    result = run_check(kind="http", url=tls_service + "/health", insecure=True, expect=["cert_days > 30"])
    assert result.status == "pass", result.message
    assert 36000 <= result.facts["cert_days"] <= 36600


def test_insecure_with_ca_file_is_a_config_error():
    message = config_error(url="https://127.0.0.1:1/", insecure=True, ca_file=CERT_FILE)
    assert message.startswith("health.checks[0].ca_file:")


def test_an_unreadable_ca_file_is_an_error_in_one_line(tls_service, tmp_path):
    for path in (str(tmp_path / "missing.pem"), __file__):
        result = run_check(kind="http", url=tls_service + "/health", ca_file=path)
        assert result.status == "error", result
        assert result.message.startswith("ca_file %s: " % path) and "\n" not in result.message
        assert "internal error" not in result.message


# --- faults: every one a one-line fail within its timeout --------------------------------------

def test_hang_times_out(service):
    result, elapsed = timed(url=service + "/fault/hang", timeout=1)
    assert_one_line_fail(result, "timed out")
    assert 0.9 <= elapsed < 1 + SLACK_S


def test_slow_response_past_the_timeout(service):
    result, elapsed = timed(url=service + "/fault/slow?ms=3000", timeout=0.5)
    assert_one_line_fail(result, "timed out after 0.5s")
    assert elapsed < 0.5 + SLACK_S


def test_slow_response_within_the_timeout_passes(service):
    result = run_check(kind="http", url=service + "/fault/slow?ms=100", timeout=3)
    assert result.status == "pass", result.message


def test_500_fails_the_default_expectation(service):
    result = run_check(kind="http", url=service + "/fault/500")
    assert_one_line_fail(result)
    assert result.message == "status: expected < 400, got 500"


@pytest.mark.parametrize("server, path, reason", [
    ("service", "/fault/huge", "max_body"),                           # 1 GiB with a Content-Length
    ("odd", "/stream", "over max_body (1048576 bytes)"),              # endless, no length
])
def test_a_huge_body_never_lands_in_memory(request, server, path, reason):
    url = request.getfixturevalue(server) + path
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result, elapsed = timed(url=url, timeout=10)
    grown_mb = peak_rss_growth_mb(before)
    assert_one_line_fail(result, reason)
    assert elapsed < 5
    assert grown_mb < 50


def test_max_body_smaller_than_the_body_fails(service):
    result = run_check(kind="http", url=service + "/health", max_body=10)
    assert_one_line_fail(result, "max_body (10 bytes)")
    assert "body" not in result.facts


def test_head_is_not_judged_by_the_length_it_announces(service):
    result, elapsed = timed(url=service + "/fault/huge", method="HEAD", expect=["status == 200"])
    assert result.status == "pass", result.message
    assert elapsed < 2


def test_reset(service):
    result, elapsed = timed(url=service + "/fault/reset", timeout=3)
    assert_one_line_fail(result, "connection reset")
    assert elapsed < 3


def test_trickle_is_cut_at_the_deadline(service):
    # 20 bytes at one per 0.5 s: without the deadline guard each read is in time and this takes 10 s.
    result, elapsed = timed(url=service + "/fault/trickle", timeout=1)
    assert_one_line_fail(result, "timed out after 1s")
    assert "json" not in result.facts
    assert 0.9 <= elapsed < 1 + SLACK_S


def test_a_body_cut_short_is_not_taken_as_whole(odd):
    result = run_check(kind="http", url=odd + "/short", timeout=3)
    assert_one_line_fail(result, "connection closed after 10 of 100 bytes")


def test_redirect_loop(service):
    result, elapsed = timed(url=service + "/fault/redirect-loop", timeout=3)
    assert_one_line_fail(result, "too many redirects")
    assert elapsed < 3


def test_connection_refused():
    result, elapsed = timed(url="http://127.0.0.1:%d/health" % free_port(), timeout=3)
    assert_one_line_fail(result, "connection refused")
    assert elapsed < 3


def test_unresolvable_host():
    result, elapsed = timed(url="http://nonexistent.invalid/health", timeout=3)
    assert_one_line_fail(result)
    assert elapsed < 3 + SLACK_S


@pytest.mark.parametrize("path,timeout", [
    ("/fault/hang", 1), ("/fault/slow?ms=2000", 1), ("/fault/500", 3), ("/fault/invalid-json", 3),
    ("/fault/huge", 3), ("/fault/reset", 3), ("/fault/trickle", 1), ("/fault/redirect-loop", 3),
])
def test_every_fault_is_a_fail_never_an_error(service, path, timeout):
    result, elapsed = timed(url=service + path, timeout=timeout, expect=["status == 200", "json.status == healthy"])
    assert_one_line_fail(result)
    assert elapsed < timeout + SLACK_S


# --- configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize("table,field", [
    ({"url": "ftp://127.0.0.1/x"}, "url"),
    ({"url": "127.0.0.1:8080/health"}, "url"),
    ({"url": "http://"}, "url"),
    ({"url": "http:///health"}, "url"),
    ({"url": "http://127.0.0.1:99999/"}, "url"),
    ({"url": "http://user:pw@127.0.0.1/"}, "url"),
    ({"url": "http://user:pw@127.0.0.1:99999/"}, "url"),
    ({"url": "http://127.0.0.1/", "body": "x", "json": {"a": 1}}, "json"),
    ({"url": "http://127.0.0.1/", "body": 5}, "body"),
    ({"url": "http://127.0.0.1/", "headers": {"X-Count": 3}}, "headers.X-Count"),
    ({"url": "http://127.0.0.1/", "headers": ["X-A: b"]}, "headers"),
    ({"url": "http://127.0.0.1/", "basic_auth": {"username": "smoke"}}, "basic_auth.password"),
    ({"url": "http://127.0.0.1/", "basic_auth": "smoke:s3cret-pass"}, "basic_auth"),
    ({"url": "http://127.0.0.1/", "max_body": -1}, "max_body"),
    ({"url": "http://127.0.0.1/", "max_body": 0}, "max_body"),
    ({"url": "http://127.0.0.1/", "follow_redirects": "no"}, "follow_redirects"),
    ({"url": "http://127.0.0.1/", "timeotu": 5}, "timeotu"),
])
def test_bad_config_names_the_field(table, field):
    message = config_error(**table)
    assert message.startswith("health.checks[0].%s:" % field), message


def test_a_password_in_the_url_is_not_quoted_in_its_error():
    for url in ("http://smoke:hunter22@127.0.0.1/", "http://smoke:hunter22@127.0.0.1:99999/",
                "ftp://smoke:hunter22@h/"):
        assert "hunter22" not in config_error(url=url)


def test_url_is_required():
    assert config_error().startswith("health.checks[0].url: required")


def test_unknown_field_suggests_the_known_one():
    assert "did you mean 'timeout'" in config_error(url="http://127.0.0.1/", timeotu=5)


def test_a_password_in_basic_auth_is_not_quoted_in_its_error():
    message = config_error(url="http://127.0.0.1/", basic_auth={"username": 7, "password": BASIC_PASSWORD})
    assert BASIC_PASSWORD not in message


def test_a_compressed_body_is_decoded_within_max_body(service):
    result = run_check(kind="http", url=service + "/gzip", expect=["json.status == healthy"])
    assert result.status == "pass", result.message
    assert result.facts["headers"]["content-encoding"] == "gzip"
    import gzip
    from checks.probes.http import _decompress
    bomb = gzip.compress(b"x" * 10000000)  # 10 MB that travels as ~10 KB
    assert len(bomb) < 20000 and _decompress(bomb, 1000) is None
    assert _decompress(gzip.compress(b"ok"), 1000) == b"ok"


def test_one_authorization_header_whatever_the_config_says(service):
    result = run_check(kind="http", url=service + "/echo", headers={"authorization": "Bearer stale"},
                       bearer_token="s3cret-token", expect=["status == 200"])
    sent = [k for k in result.facts["json"]["headers"] if k == "authorization"]
    assert sent == ["authorization"]
    assert run_check(kind="http", url=service + "/auth/bearer", headers={"authorization": "Bearer stale"},
                     bearer_token="s3cret-token").status == "pass"


def test_header_names_alike_but_for_case_are_exit_2_wherever_headers_are_given(tmp_path):
    """HTTP header names are case-insensitive: Host and host are one header, which would be sent
    twice (or one lost). A check's, a prometheus check's, a deploy step's and a perf target's
    headers, and --header flags: exit 2 naming where, at --validate too."""
    sections = {
        "health": {"checks": [{"name": "a", "kind": "http", "url": "http://127.0.0.1:1/",
                               "headers": {"Host": "evil", "host": "x"}}]},
        "deploy": {"predict": {"kind": "http", "url": "http://127.0.0.1:1/", "headers": {"X-A": "1", "x-a": "2"}}},
        "perf": {"targets": [{"name": "t", "url": "http://127.0.0.1:1/", "headers": {"Accept": "a", "ACCEPT": "b"}}]}}
    path = tmp_path / "smoke.json"
    for section, table in sections.items():
        path.write_text(json.dumps({section: table}))
        done = smoke(section, "--config", path, "--validate")
        assert done.returncode == 2 and "are one header (names are case-insensitive)" in done.stderr, done.stderr
    with pytest.raises(ConfigError, match=r"health.checks\[0\].headers: 'Authorization' and 'authorization' are one"):
        run_check(kind="prometheus", url="http://127.0.0.1:1", query="up",
                  headers={"Authorization": "a", "authorization": "b"})
    for command in (["deploy", "--predict-url"], ["perf", "--url"]):
        for second in ("host: b", "Host: b"):
            done = smoke(*command, "http://127.0.0.1:1/", "--header", "Host: a", "--header", second, "--validate")
            assert done.returncode == 2 and "--header %s: Host is given already" % second.split(":")[0] in done.stderr


def test_a_json_body_s_content_type_is_the_config_s_whatever_its_case(service):
    result = run_check(kind="http", method="POST", url=service + "/echo", json={"a": 1},
                       headers={"content-type": "application/vnd.api+json"}, expect=["status == 200"])
    sent = {k: v for k, v in result.facts["json"]["headers"].items() if k.lower() == "content-type"}
    assert sent == {"content-type": "application/vnd.api+json"}, sent


def test_basic_auth_rejects_unknown_keys():
    from checks import ConfigError
    with pytest.raises(ConfigError, match=r"health.checks\[0\].basic_auth.user: unknown field"):
        run_check(kind="http", url="http://127.0.0.1:1/", basic_auth={"username": "a", "password": "b", "user": "c"})


def test_prometheus_shares_the_header_checks():
    from checks import ConfigError
    with pytest.raises(ConfigError, match=r"health.checks\[0\].bearer_token: a header value cannot contain"):
        run_check(kind="prometheus", url="http://127.0.0.1:1", query="up", bearer_token="tok-secret\n")


def test_a_client_keeps_its_connection_alive_and_survives_an_idle_close():
    """probes.http.Client: many requests over one connection; a server that closes an idle
    kept connection (its keep-alive timeout) costs a reconnect, not a failed request."""
    from checks.probes.http import Client, Request

    connections = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            connections.append(self.connection)

        def do_GET(self):
            body = b'{"n": %d}' % len(connections)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = Client()
    try:
        request = Request("http://127.0.0.1:%d/" % server.server_port)
        answers = [client.fetch(request, 2) for _ in range(20)]
        assert [a["status"] for a in answers] == [200] * 20 and len(connections) == 1
        connections[0].shutdown(socket.SHUT_RDWR)  # the server drops the idle connection
        time.sleep(0.05)
        again = client.fetch(request, 2)
        assert again["status"] == 200 and again["json"] == {"n": 2}, again
    finally:
        client.close()
        server.shutdown()
        server.server_close()


# --- what servers send back: bad status lines, odd bytes; URLs; no ssl module -----------------

def test_a_garbage_status_line_gives_an_escaped_reason(service):
    done = smoke("health", "--format", "text", "--url", service + "/hostile/garbage")
    assert "bad status line: 'GARBAGE\\x1b[31m and more garbage that runs …'" in done.stdout, done.stdout
    assert "\x1b" not in done.stdout


def test_non_ascii_urls_are_sent_encoded(service):
    result = run_check(kind="http", url=service + "/caf\u00e9?q=\u00fc", expect=["status == 404"])
    assert result.status == "pass", result.message  # the fixture's 404 says which path it was asked for
    assert result.facts["json"]["path"] == "/caf%C3%A9?q=%C3%BC"


def test_what_a_server_sends_back_malformed_is_a_fail_not_our_error(service, tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers = {"/bad-location": (302, {"Location": "http://[::1"}, b""),
               "/prom-list/api/v1/query": (200, {}, b'{"status": "success", "data": [1, 2]}'),
               "/prom-scalar/api/v1/query": (200, {}, b'{"status": "success", "data": {"resultType": "scalar", "result": [1]}}'),
               "/version": (200, {}, json.dumps({"version": "1." + "9" * 5000 + ".1"}).encode())}

    class Odd(BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = answers[self.path.split("?")[0]]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Odd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % server.server_address[1]
    try:
        assert run_check(kind="http", url=base + "/bad-location").status == "fail"
        for prefix in ("/prom-list", "/prom-scalar"):
            result = run_check(kind="prometheus", url=base + prefix, query="up")
            assert result.status == "fail" and "not a query result" in result.message, result.message
        result = run_check(kind="http", url=base + "/version", expect=["json.version >= 1.0"])
        assert result.status in ("pass", "fail") and "internal error" not in result.message
    finally:
        server.shutdown()
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    result = run_check(kind="file", path=str(deep), expect=["json exists"])
    assert result.status == "fail" and "nested too deeply" in result.facts["json_error"]


def test_https_on_a_python_without_ssl_is_a_config_error(tmp_path):
    """A real import failure: the interpreter is told that ssl does not exist."""
    path = config(tmp_path, [{"name": "c", "kind": "http", "url": "https://127.0.0.1:1/"}])
    code = ("import runpy, sys; sys.modules['ssl'] = None; sys.argv = ['smoke.py'] + sys.argv[1:]; "
            "runpy.run_path(%r, run_name='__main__')" % SMOKE)
    for args in (["--validate"], []):
        done = subprocess.run([sys.executable, "-c", code, "health", "--config", path] + args,
                              capture_output=True, text=True, timeout=30, cwd=str(ROOT))
        assert done.returncode == 2 and "https needs Python's ssl module" in done.stderr, done.stderr
