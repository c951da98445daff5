"""Every report sink parsed back and compared with the JSON report, and read by its real
reader where Debian has one: promtool, node_exporter's textfile collector, the Pushgateway."""

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from xml.etree import ElementTree

import pytest

from conftest import ROOT, free_port

SMOKE = str(ROOT / "smoke.py")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A config with a pass, a fail, an error, a warning and a skip; every file sink of one run."""
    tmp = tmp_path_factory.mktemp("sinks")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    (tmp / "smoke.json").write_text(json.dumps({"health": {"checks": [
        {"name": "up", "kind": "tcp", "address": "127.0.0.1:%d" % port},
        {"name": "down \"quoted\"\nline", "kind": "tcp", "address": "127.0.0.1:1"},
        {"name": "cannot", "kind": "command", "command": ["/nonexistent/probe"]},
        {"name": "slow", "kind": "tcp", "address": "127.0.0.1:1", "severity": "warning"},
        {"name": "later", "kind": "tcp", "address": "127.0.0.1:1", "tags": ["daily"]}]}}))
    files = {flag: tmp / name for flag, name in (("--output", "r.json"), ("--junit", "r.xml"),
                                                  ("--prom", "smoke.prom"), ("--tap", "r.tap"))}
    argv = [sys.executable, SMOKE, "health", "--config", str(tmp / "smoke.json"), "--skip-tag", "daily",
            "--state-dir", str(tmp / "state")]
    for flag, path in files.items():
        argv += [flag, str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    sock.close()
    return done, json.loads(files["--output"].read_text()), files, tmp


def test_junit_has_a_testcase_per_result_with_failures_errors_and_skips(mixed):
    done, report, files, _ = mixed
    root = ElementTree.parse(str(files["--junit"])).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "5"
    [suite] = root.findall("testsuite")
    assert (suite.get("name"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("health", "1",
                                                                                                      "1", "1")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert set(cases) == {r["name"] for r in report["results"]}
    failure = cases['down "quoted"\nline'].find("failure")
    assert failure.get("message") == "connection refused" and "connected: false" in failure.text
    assert cases["cannot"].find("error") is not None and cases["later"].find("skipped") is not None
    assert "warn" in cases["slow"].find("system-out").text and len(cases["up"]) == 0
    assert float(cases["up"].get("time")) >= 0


def test_the_prometheus_file_matches_the_report_and_promtool_accepts_it(mixed):
    done, report, files, _ = mixed
    text = files["--prom"].read_text()
    assert 'smoke_check_success{command="health",selection="-daily",section="health",check="up"} 1.0' in text
    assert 'check="down \\"quoted\\"\\nline"} 0.0' in text  # labels escaped
    assert 'check="slow"} 1.0' in text and 'check="later"' not in text  # a warning passes; a skip says nothing
    assert 'smoke_run_success{command="health",selection="-daily"} 0.0' in text  # a tier's series are its own
    stamp = float(re.search(r"smoke_run_timestamp_seconds\{[^}]*\} (\S+)", text).group(1))
    assert abs(stamp - time.time()) < 120
    if not shutil.which("promtool"):
        pytest.skip("promtool is not installed (apt install prometheus)")
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_tap_and_the_exit_code_agree_with_the_report(mixed):
    done, report, files, _ = mixed
    lines = files["--tap"].read_text().splitlines()
    assert lines[:2] == ["TAP version 13", "1..5"]
    verdicts = [line.split(" - ")[0].rsplit(" ", 1)[0] for line in lines if re.match(r"(not )?ok \d", line)]
    assert verdicts == ["ok", "not ok", "not ok", "ok", "ok"]
    assert any("# SKIP" in line for line in lines) and done.returncode == report["exit_code"] == 1


def test_node_exporter_serves_the_textfile(mixed):
    exporter = shutil.which("prometheus-node-exporter")
    if not exporter:
        pytest.skip("prometheus-node-exporter is not installed (apt install prometheus-node-exporter)")
    _, _, files, tmp = mixed
    port = free_port()
    proc = subprocess.Popen([exporter, "--web.listen-address=127.0.0.1:%d" % port, "--collector.disable-defaults",
                             "--collector.textfile", "--collector.textfile.directory=%s" % tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        text = _get("http://127.0.0.1:%d/metrics" % port)
        assert 'smoke_check_success{check="up",command="health",section="health",selection="-daily"} 1' in text
        assert "node_textfile_scrape_error 0" in text
    finally:
        proc.terminate()
        proc.wait(10)


def test_push_reaches_a_real_pushgateway(tmp_path):
    gateway = shutil.which("prometheus-pushgateway")
    if not gateway:
        pytest.skip("prometheus-pushgateway is not installed (apt install prometheus-pushgateway)")
    port = free_port()
    proc = subprocess.Popen([gateway, "--web.listen-address=127.0.0.1:%d" % port,
                             "--persistence.file=%s" % (tmp_path / "pg.data")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _get("http://127.0.0.1:%d/metrics" % port)
        done = subprocess.run([sys.executable, SMOKE, "health", "--tcp", "127.0.0.1:1", "--name", "db", "--push",
                               "http://127.0.0.1:%d" % port, "--state-dir", str(tmp_path)], capture_output=True,
                              text=True, timeout=60)
        assert "problems" not in json.loads(done.stdout), done.stdout
        text = _get("http://127.0.0.1:%d/metrics" % port)
        host = socket.gethostname()
        assert re.search(r'smoke_check_success\{check="db",command="health",instance="%s",job="smoke",'
                         r'section="health"\} 0' % re.escape(host), text), text[-2000:]
    finally:
        proc.terminate()
        proc.wait(10)
    done = subprocess.run([sys.executable, SMOKE, "health", "--tcp", "127.0.0.1:1", "--push", "http://127.0.0.1:1",
                           "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "--push" in json.loads(done.stdout)["problems"][0]  # said, verdict unchanged


def test_nagios_status_line_perfdata_and_exit_codes(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    up = "127.0.0.1:%d" % sock.getsockname()[1]
    cases = [(["--tcp", up], 0, "SMOKE OK - 1/1 passed | 'tcp %s'=" % up),
             (["--tcp", "127.0.0.1:1", "--name", "a2a"], 2, "SMOKE CRITICAL - 1/1 failed: a2a | 'a2a'="),
             (["--config", str(tmp_path / "missing.json")], 3, ""),
             (["--bogus-flag"], 3, "")]
    (tmp_path / "w.json").write_text(json.dumps({"health": {"checks": [
        {"name": "ok", "kind": "tcp", "address": up},
        {"name": "slow", "kind": "tcp", "address": "127.0.0.1:1", "severity": "warning"}]}}))
    cases.append((["--config", str(tmp_path / "w.json")], 1, "SMOKE WARNING - 1/2 warned: slow"))
    try:
        for flags, code, first in cases:
            done = subprocess.run([sys.executable, SMOKE, "health", "--format", "nagios", "--state-dir",
                                   str(tmp_path)] + flags, capture_output=True, text=True, timeout=60)
            assert done.returncode == code, (flags, done.stdout, done.stderr)
            assert done.stdout.startswith(first), (flags, done.stdout)
        done = subprocess.run([sys.executable, SMOKE, "health", "--tcp", "127.0.0.1:1", "--exit-codes", "nagios",
                               "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and json.loads(done.stdout)["exit_code"] == 2  # the report says the same code
    finally:
        sock.close()


def test_a_sink_that_cannot_be_written_is_refused_before_the_run(tmp_path):
    for flag in ("--junit", "--prom", "--tap"):
        done = subprocess.run([sys.executable, SMOKE, "health", "--tcp", "127.0.0.1:1", flag,
                               str(tmp_path / "missing" / "x")], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and flag in done.stderr and "does not exist" in done.stderr


def _get(url):
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return answer.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_tap_names_cannot_forge_a_directive_and_suite_names_stay_unique(tmp_path):
    (tmp_path / "smoke.json").write_text(json.dumps({"health": {"checks": [
        {"name": "evil\\# SKIP hidden", "kind": "tcp", "address": "127.0.0.1:1"}]}}))
    done = subprocess.run([sys.executable, SMOKE, "health", "--config", str(tmp_path / "smoke.json"), "--format",
                           "tap", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    line = [each for each in done.stdout.splitlines() if each.startswith("not ok")][0]
    assert line == "not ok 1 - health/evil\\\\\\# SKIP hidden"  # each backslash and # escaped: no directive
    junit = '<testsuite><testcase name="dup" classname="c"/><testcase name="dup" classname="c"><failure/></testcase>' \
            '</testsuite>'
    (tmp_path / "smoke.json").write_text(json.dumps({"health": {"checks": [
        {"name": "s", "kind": "suite", "command": ["sh", "-c", "printf '%s' \"$1\" > \"$0\"", "{junit}", junit]},
        {"name": "s/c.dup", "kind": "command", "command": ["false"]}]}}))
    done = subprocess.run([sys.executable, SMOKE, "health", "--config", str(tmp_path / "smoke.json"), "--format",
                           "prometheus", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert 'check="s/c.dup"} 0.0' in done.stdout  # the configured check keeps its name, whatever comes first
    assert 'check="s/c.dup (2)"} 1.0' in done.stdout and 'check="s/c.dup (3)"} 0.0' in done.stdout
