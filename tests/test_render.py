"""checks/render.py: the renderers on stdout (text, nagios, tap, prometheus) and escaping for terminals,
through a real smoke.py against the fixture service's /hostile/ answers, on pipes and a real pseudo-terminal.
"""

import json
import os
import pty
import socket
import subprocess
import sys

from conftest import SMOKE, report_of, smoke


# --- escaping: nothing from outside reaches a terminal raw -----------------------------------

def test_invisible_format_characters_are_escaped_too(service):
    name = "n\u206a\U000e0001\ufff9\u00ad\u180e\u2066e"
    done = smoke("health", "--format", "text", "--url", service + "/fault/500", "--name", name)
    assert "n\\u206a\\U000e0001\\ufff9\\xad\\u180e\\u2066e" in done.stdout
    assert not any(not char.isprintable() for char in done.stdout.replace("\n", ""))
    done = smoke("health", "--url", service + "/fault/500", "--name", name)
    assert not any(not char.isprintable() for char in done.stdout.replace("\n", ""))
    assert report_of(done)["results"][0]["name"] == name


def test_control_characters_are_escaped_in_text_output(service):
    done = smoke("health", "--format", "text", "--url", service + "/hostile/terminal", "--name", "evil\x1b[2Jname")
    assert "\x1b" not in done.stdout and "\r" not in done.stdout and "\x00" not in done.stdout
    assert "\u202e" not in done.stdout and "\x07" not in done.stdout
    assert "\\x1b[2J" in done.stdout and "evil\\x1b[2Jname" in done.stdout


def test_progress_and_errors_on_a_terminal_are_escaped(service):
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--url", service + "/hostile/terminal",
                             "--name", "x\x1b[31my"], stdout=subprocess.PIPE, stderr=slave)
    proc.communicate(timeout=30)
    os.close(slave)
    terminal = os.read(master, 65536).decode()
    os.close(master)
    assert "x\\x1b[31my" in terminal and "\x1b[31m" not in terminal


# --- nagios and tap --------------------------------------------------------------------------

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


def test_a_run_worse_than_its_results_is_no_pass_to_a_reader_that_counts_them(service, tmp_path):
    """A pass whose --output could not be written, or a run a signal stopped, is exit 3 or
    143: JUnit, TAP and Nagios say so, though every result they list passed or was skipped."""
    import signal
    import time
    import xml.etree.ElementTree as ElementTree

    junit, tap = tmp_path / "j.xml", tmp_path / "t.tap"
    done = smoke("health", "--url", service + "/health", "--output", "/dev/full", "--junit", str(junit),
                 "--tap", str(tap), "--format", "nagios")
    assert done.returncode == 3
    assert done.stdout.startswith("SMOKE UNKNOWN - 1/1 passed, but the run did not: --output: cannot write /dev/full")
    suites = ElementTree.parse(str(junit)).getroot()
    assert suites.get("errors") == "1" and suites.find("testsuite[@name='report']/testcase/error") is not None
    lines = tap.read_text().splitlines()
    assert lines[1] == "1..2" and lines[3] == "not ok 2 - the run", lines
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps({"health": {"checks": [{"name": "slow", "kind": "command", "timeout": 60,
                                                       "command": [sys.executable, "-c", "import time; time.sleep(30)"]}]}}))
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--config", str(slow), "--tap", str(tap)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    lines = tap.read_text().splitlines()
    assert proc.returncode == 143 and "not ok 2 - the run" in lines and '  message: "interrupted by SIGTERM"' in lines


def test_a_report_of_many_results_is_json_with_a_result_per_line(tmp_path):
    """Past 1,000 results the report is written a result per line (the C encoder, on every
    Python): still one JSON document, each line of results one result."""
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"health": {"checks": [{"name": "f%d" % i, "kind": "file", "path": SMOKE}
                                                      for i in range(1500)]}}))
    out = tmp_path / "report.json"
    done = smoke("health", "--config", str(path), "--output", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    report = json.loads(text)
    lines = [line for line in text.splitlines() if line.startswith('    {"name": ')]
    assert len(report["results"]) == 1500 and len(lines) == 1500
    assert [json.loads(line.rstrip(",")) for line in lines] == report["results"]
