"""The prometheus kind against a real Prometheus (Debian's package) scraping the fixture service.

Prometheus starts once for the module; where it is not installed the module skips,
saying how to install it. There is no fake Prometheus.
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from checks import ConfigError
from conftest import free_port, run_check
from fixtures import prometheus
from fixtures.service import serve_in_thread



@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    """Base URL of a real Prometheus that has scraped the fixture service at least once."""
    if prometheus.find_binary() is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus): real-server tests skipped")
    server, service_url = serve_in_thread()
    proc = None
    try:
        proc, port = prometheus.start(service_url.split("://", 1)[1].rstrip("/"), 0,
                                      str(tmp_path_factory.mktemp("prometheus")))
        prometheus.wait_for_data(port, "smoke_fixture_up")
        yield "http://127.0.0.1:%d" % port
    finally:
        if proc is not None:
            prometheus.stop(proc)
        server.shutdown()
        server.server_close()


def query(prom, text, **fields):
    return run_check(kind="prometheus", url=prom, query=text, timeout=5, **fields)


def test_value_of_a_gauge(prom):
    result = query(prom, "smoke_fixture_up", expect=["value == 1"])
    assert result.status == "pass", result.message
    assert result.facts["count"] == 1
    assert result.facts["values"] == [1]
    assert result.facts["series"][0]["metric"]["__name__"] == "smoke_fixture_up"
    assert result.facts["series"][0]["metric"]["job"] == "fixture"


def test_agents_loaded(prom):
    result = query(prom, "smoke_fixture_agents_loaded", expect=["value >= 15"])
    assert result.status == "pass", result.message
    assert result.facts["value"] == 15
    result = query(prom, "smoke_fixture_agents_loaded", expect=["value > 15"])
    assert result.status == "fail"
    assert result.message == "value: expected > 15, got 15"


def test_default_expectation_is_some_data(prom):
    result = query(prom, "up")
    assert result.status == "pass", result.message
    assert result.message == ""


def test_a_vector_of_several_series(prom):
    result = query(prom, 'count by (__name__) ({job="fixture", __name__=~"smoke_fixture_.*"})',
                   expect=["count == 3"])
    assert result.status == "pass", result.message
    names = sorted(s["metric"]["__name__"] for s in result.facts["series"])
    assert names == ["smoke_fixture_agents_loaded", "smoke_fixture_requests_total", "smoke_fixture_up"]
    assert result.facts["values"] == [1, 1, 1]


def test_a_scalar(prom):
    result = query(prom, "scalar(smoke_fixture_up) + 1", expect=["value == 2"])
    assert result.status == "pass", result.message
    assert result.facts["count"] == 1
    result = query(prom, "1+1", expect=["value == 2"])
    assert result.status == "pass", result.message
    assert result.facts["series"] == [{"metric": {}, "value": 2}]


def test_no_data_is_judged_by_the_expectations_by_default(prom):
    result = query(prom, "smoke_fixture_no_such_metric")  # the default expectation, count > 0
    assert result.status == "fail"
    assert result.message == "count: expected > 0, got 0"
    assert result.facts["count"] == 0
    assert result.facts["no_data"] == "no data: smoke_fixture_no_such_metric returned an empty result"
    result = query(prom, "smoke_fixture_no_such_metric", expect=["value == 1"])
    assert result.message == "value: missing (no data: smoke_fixture_no_such_metric returned an empty result)"
    # "Nothing is down": an empty answer to up == 0 is the pass (issue 5).
    result = query(prom, 'up{job="fixture"} == 0', expect=["count == 0"])
    assert result.status == "pass", result.message


def test_no_data_can_fail_whatever_the_expectations(prom):
    result = query(prom, "smoke_fixture_no_such_metric", on_no_data="fail", expect=["count == 0"])
    assert result.status == "fail"
    assert result.message == "no data: smoke_fixture_no_such_metric returned an empty result"


def test_no_data_can_be_an_error(prom):
    result = query(prom, "smoke_fixture_no_such_metric", on_no_data="error")
    assert result.status == "error"
    assert result.message == "no data: smoke_fixture_no_such_metric returned an empty result"


def test_no_data_can_pass(prom):
    result = query(prom, "smoke_fixture_no_such_metric", on_no_data="pass", expect=["value == 1"])
    assert result.status == "pass"
    assert result.message == ("no data: smoke_fixture_no_such_metric returned an empty result "
                              "(on_no_data = pass)")
    # on_no_data only speaks for an empty result: data is still judged.
    result = query(prom, "smoke_fixture_up", on_no_data="pass", expect=["value == 2"])
    assert result.status == "fail"
    assert result.message == "value: expected == 2, got 1"


def test_bad_promql_is_an_error_in_prometheus_own_words(prom):
    """A query Prometheus rejects says nothing of the system's health: we could not check."""
    result = query(prom, "sum(smoke_fixture_up")
    assert result.status == "error"
    assert result.message.startswith('prometheus rejected the query: invalid parameter "query": ')
    assert "parse error" in result.message
    assert "\n" not in result.message


def test_prometheus_down_fails_with_connection_refused():
    result = run_check(kind="prometheus", url="http://127.0.0.1:%d" % free_port(), query="up", timeout=2)
    assert result.status == "fail"
    assert result.message == "prometheus: connection refused"


class NotPrometheus(BaseHTTPRequestHandler):
    """A web server that is not Prometheus, as a wrong URL would reach."""

    def do_GET(self):
        body = b"<html>\n<body>\n  <h1>Welcome</h1>\n</body>\n</html>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_url_that_is_not_prometheus_fails_in_one_line(service):
    result = run_check(kind="prometheus", url=service, query="up", timeout=2)
    assert result.status == "fail"
    assert result.message == "prometheus answered 404: not found (is url the Prometheus base URL?)"

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_check(kind="prometheus", url="http://127.0.0.1:%d" % server.server_address[1],
                           query="up", timeout=2)
    finally:
        server.shutdown()
        server.server_close()
    assert result.status == "fail"
    assert result.message == "prometheus answered 200: <html> <body> <h1>Welcome</h1> </body> </html>"


def config_error(**table):
    with pytest.raises(ConfigError) as caught:
        run_check(kind="prometheus", **table)
    return str(caught.value)


def test_config_errors():
    assert config_error(url="127.0.0.1:9090", query="up") == \
        "health.checks[0].url: expected the Prometheus base URL, e.g. http://127.0.0.1:9090"
    assert config_error(url="ftp://127.0.0.1:9090", query="up") == \
        "health.checks[0].url: expected the Prometheus base URL, e.g. http://127.0.0.1:9090"
    assert config_error(url="http://127.0.0.1:9090", query="up", on_no_data="ignore") == \
        'health.checks[0].on_no_data: expected one of expect, fail, error, pass, got a string "ignore"'
    assert config_error(url="http://127.0.0.1:9090") == "health.checks[0].query: required field is missing"


def test_an_api_path_in_the_url_is_a_config_error():
    assert config_error(url="http://127.0.0.1:9090/api/v1/query", query="up") == \
        "health.checks[0].url: give the Prometheus base URL (http://127.0.0.1:9090), not an API path"
