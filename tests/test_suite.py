"""The suite kind on a real pytest run: every testcase a result, the pass rate over them."""

import json
import subprocess
import sys

from conftest import ROOT

SMOKE = str(ROOT / "smoke.py")
TESTS = '''
import pytest

def test_up(): assert True
def test_search(): assert 1 + 1 == 3, "search answered 3"
@pytest.mark.skip(reason="not on this host")
def test_gpu(): pass
@pytest.fixture
def broken(): raise RuntimeError("no database")
def test_db(broken): pass
@pytest.mark.critical
def test_login(): assert True
'''


def run(tmp_path, *flags, **check):
    (tmp_path / "test_smoke.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers = critical\n")
    table = dict({"name": "suite", "kind": "suite", "cwd": str(tmp_path), "timeout": 120,
                  "command": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml",
                              "{junit}", str(tmp_path / "test_smoke.py")]}, **check)
    (tmp_path / "smoke.json").write_text(json.dumps({"health": {"checks": [table]}}))
    done = subprocess.run([sys.executable, SMOKE, "health", "--config", str(tmp_path / "smoke.json"),
                           "--state-dir", str(tmp_path / "state")] + list(flags), capture_output=True, text=True,
                          timeout=180)
    report = json.loads(done.stdout) if done.stdout.startswith("{") else None
    return done, report, {r["name"]: r for r in (report or {}).get("results", [])}


def test_every_testcase_of_a_real_pytest_run_is_a_result(tmp_path):
    done, report, results = run(tmp_path)
    assert done.returncode == 1, done.stderr
    assert {name: r["status"] for name, r in results.items()} == {
        "suite/test_smoke.test_up": "pass", "suite/test_smoke.test_search": "fail",
        "suite/test_smoke.test_gpu": "skip", "suite/test_smoke.test_db": "error",
        "suite/test_smoke.test_login": "pass"}
    assert "search answered 3" in results["suite/test_smoke.test_search"]["message"]
    assert "no database" in results["suite/test_smoke.test_db"]["facts"]["detail"]
    assert report["summary"]["pass_rate"] == 0.5  # 2 of the 4 that ran
    done, report, _ = run(tmp_path, "--min-pass-rate", "0.5")
    assert done.returncode == 0 and report["status"] == "pass"


def test_markers_select_what_the_suite_runs(tmp_path):
    done, report, results = run(tmp_path, command=[sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                                   "-m", "critical", "--junitxml", "{junit}",
                                                   str(tmp_path / "test_smoke.py")])
    assert done.returncode == 0 and list(results) == ["suite/test_smoke.test_login"], done.stdout


def test_a_suite_that_writes_no_junit_is_one_error_and_no_placeholder_is_exit_2(tmp_path):
    done, report, results = run(tmp_path, command=["true", "{junit}"])
    assert done.returncode == 3 and "did the command write it to {junit}?" in results["suite"]["message"]
    done, report, results = run(tmp_path, command=["sh", "-c", "echo '<html/>' > \"$0\"", "{junit}"])
    assert done.returncode == 3 and "not JUnit XML (its root is <html>)" in results["suite"]["message"]
    bomb = ('<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            '<testsuite><testcase name="&b;"/></testsuite>')
    done, report, results = run(tmp_path, command=["sh", "-c", "printf '%s' \"$1\" > \"$0\"", "{junit}", bomb])
    assert done.returncode == 3 and "declares entities" in results["suite"]["message"]
    done, report, results = run(tmp_path, command=["sh", "-c", "echo '<testsuite/>' > \"$0\"", "{junit}"])
    assert done.returncode == 1 and "tests: expected > 0, got 0" in results["suite"]["message"]
    done, _, _ = run(tmp_path, command=["pytest"])
    assert done.returncode == 2 and "{junit}" in done.stderr
