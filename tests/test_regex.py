"""checks/regex.py: regular expressions over outside text are bounded in time. Real bodies from the
fixture service's /hostile/ answers, real log files and processes, signals sent to a real smoke.py, and
its helper processes, found in /proc.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import SMOKE, config, gone, report_of, run_check, smoke, timed_run


CATASTROPHIC = ["(a+)+$", "(a|a)*$", "(a|aa)+$", "(.*a){20}$", "(\\w+\\s?)+$"]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_backtracking_pattern_ends_at_the_checks_timeout(service, pattern):
    done, took = timed_run("health", "--url", service + "/hostile/backtrack", "--expect", "body matches " + pattern,
                           "--timeout", "2")
    result = report_of(done)["results"][0]
    assert took < 5, took
    assert done.returncode == 3 and result["status"] == "error"
    assert "did not finish within" in result["message"]


def test_a_backtracking_pattern_ends_at_the_run_deadline(service):
    done, took = timed_run("health", "--url", service + "/hostile/backtrack", "--expect", "body matches (a+)+$",
                           "--timeout", "60", "--deadline", "2")
    assert took < 5 and done.returncode in (1, 3)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_backtracking_pattern_gives_way_to_a_signal(service, signum, code):
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--url", service + "/hostile/backtrack",
                             "--expect", "body matches (a+)+$", "--timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    sent = time.monotonic()
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 3
    assert proc.returncode == code and json.loads(out)["interrupted"] == signal.Signals(signum).name


def test_quadratic_patterns_on_a_megabyte_are_bounded_too(service):
    # Not nested: .*x and \d+\.\d+ are merely quadratic, which on a megabyte is forever.
    for pattern in (".*x", "\\d+\\.\\d+"):
        done, took = timed_run("health", "--url", service + "/hostile/digits", "--expect", "body matches " + pattern,
                               "--timeout", "1")
        assert took < 4 and report_of(done)["results"][0]["status"] == "error", pattern


def test_a_long_pattern_without_repetition_is_bounded_too(tmp_path, service):
    """No quantifier, but 3000 steps at each of 3 million places: it must not run in-process."""
    log = tmp_path / "long.log"
    log.write_text("a" * 3000000 + "\n")
    started = time.monotonic()
    result = run_check(kind="log", path=str(log), pattern="." * 3000 + "X", lines=1, expect=["count == 0"], timeout=1)
    assert time.monotonic() - started < 3 and result.status == "error"
    done, took = timed_run("health", "--url", service + "/hostile/digits", "--expect",
                           "body matches " + "." * 3000 + "X", "--timeout", "30", "--deadline", "2")
    assert took < 5


@pytest.mark.serial  # another test's smoke.py, running meanwhile, has helpers of its own
def test_smoke_pys_own_helpers_are_not_counted_or_left_behind(service, tmp_path):
    log = tmp_path / "quick.log"
    log.write_text("bbb\n" * 10)
    # Other processes' helpers (this test process may have some) are processes like any other, and
    # counted; they can only go away meanwhile, so the count must not exceed what is there now.
    outside = {marker: sum(marker.encode() in cmdline(int(p)) for p in os.listdir("/proc") if p.isdigit())
               for marker in ("import marshal, re, signal", "while IFS= read -r line")}
    checks = [{"name": "child", "kind": "command", "command": ["true"]}]  # starts this run's reaper
    for i in range(8):  # quick patterns that need the helper: the run's helpers are alive meanwhile
        checks.append({"name": "regex%d" % i, "kind": "log", "path": str(log), "pattern": "(b+)+$",
                       "expect": ["count == 10"]})
        checks.append({"name": "helpers%d" % i, "kind": "process", "pattern": "import marshal, re, signal",
                       "expect": ["count <= %d" % outside["import marshal, re, signal"]]})
        checks.append({"name": "reaper%d" % i, "kind": "process", "pattern": "while IFS= read -r line",
                       "expect": ["count <= %d" % outside["while IFS= read -r line"]]})
    done = smoke("health", "--config", config(tmp_path, checks), "--concurrency", "8")
    assert done.returncode == 0, [(r["name"], r["message"]) for r in report_of(done)["results"] if r["message"]]
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--url", service + "/hostile/backtrack", "--expect",
                             "body matches (a+)+$", "--timeout", "600"], stdout=subprocess.DEVNULL)
    time.sleep(1.5)
    helpers = [pid for pid in children_of(proc.pid) if b"import marshal, re, signal" in cmdline(pid)]
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while not all(gone(pid) for pid in helpers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert helpers and all(gone(pid) for pid in helpers)


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def children_of(parent):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % entry, "rb") as fh:
                if int(fh.read().rsplit(b")", 1)[1].split()[1]) == parent:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return found


def test_a_log_pattern_is_bounded(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("start\n" + "a" * 40 + "!\n")
    started = time.monotonic()
    result = run_check(kind="log", path=str(log), pattern="(a+)+$", expect=["count == 0"], timeout=1)
    assert time.monotonic() - started < 3
    assert result.status == "error" and "did not finish within" in result.message


def test_a_process_pattern_is_bounded():
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "a" * 40 + "!"])
    try:
        from checks import procfs
        waited = time.monotonic() + 5  # its command line as /proc shows it, before the check looks for it
        while "a" * 40 + "!" not in procfs.argv(victim.pid) and time.monotonic() < waited:
            time.sleep(0.01)
        started = time.monotonic()
        result = run_check(kind="process", pattern="(a+)+$", timeout=1)
        assert time.monotonic() - started < 3 and result.status == "error"
    finally:
        victim.kill()
        victim.wait()


def test_patterns_that_cannot_backtrack_still_match_exactly(service):
    for condition, holds in (("body matches ^a+!$", True), ("body matches ^a{40}!$", True), ("body matches b|!", True),
                             ("body !matches (?i)ERROR|CRITICAL", True), ("body matches ^(a|b)", True),
                             ("body matches ^b", False)):
        result = run_check(kind="http", url=service + "/hostile/backtrack", expect=[condition])
        assert (result.status == "pass") is holds, (condition, result.message)
