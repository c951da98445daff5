"""checks/runner.py, and the registries: concurrency, budgets, retries, deadline, selection, judging.

Probes here are plain functions with real sleeps and real threads: the runner's
contract is with the probe interface (timeout in, facts out), not with any I/O. The
last few run a real smoke.py against the fixture service under real rlimits (the fd
limit, memory), and judge real facts that hold a secret.
"""

import json
import os
import resource
import subprocess
import sys
import threading
import time

import pytest

from checks import CheckError, expect
from checks.secrets import Secrets
from checks.model import ExitCode, verdict
from checks.model import Check
from checks.runner import RunContext, excerpt, judge, run_check, run_checks, select
from conftest import SMOKE, config, report_of, smoke


def make(name="c", probe=None, expect_=("ok == true",), **kw):
    probe = probe or (lambda timeout, ctx: {"ok": True})
    return Check(name=name, section="health", kind="test", probe=probe,
                 expect=tuple(expect.parse(t) for t in expect_), **kw)


def sleeper(seconds, facts=None):
    def probe(timeout, ctx):
        time.sleep(seconds)
        return facts or {"ok": True}
    return probe


def test_results_come_back_in_the_order_given():
    checks = [make("slow", sleeper(0.3)), make("fast", sleeper(0.01))]
    assert [r.name for r in run_checks(checks, RunContext())] == ["slow", "fast"]


def test_concurrency_is_bounded_and_used():
    lock, now, peak = threading.Lock(), [0], [0]

    def probe(timeout, ctx):
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.1)
        with lock:
            now[0] -= 1
        return {"ok": True}

    started = time.monotonic()
    results = run_checks([make("c%d" % i, probe) for i in range(12)], RunContext(concurrency=4))
    elapsed = time.monotonic() - started
    assert peak[0] == 4
    assert all(r.status == "pass" for r in results)
    assert 0.28 < elapsed < 1.0  # three waves of 0.1 s


def test_a_pass_after_retries_is_flagged_flaky():
    calls = []

    def probe(timeout, ctx):
        calls.append(1)
        return {"ok": len(calls) >= 3}

    result = run_check(make(probe=probe, retries=3, retry_delay=0.01))
    assert (result.status, result.attempts, result.flaky) == ("pass", 3, True)
    assert result.to_dict()["flaky"] is True


def test_retries_exhausted_fail_with_the_last_evidence():
    result = run_check(make(probe=lambda t, ctx: {"ok": False}, retries=2, retry_delay=0.01))
    assert result.status == "fail"
    assert result.message == "ok: expected == true, got false (3 attempts)"
    assert result.attempts == 3 and not result.flaky


def test_a_warning_check_warns_and_does_not_fail_the_verdict():
    results = run_checks([make("a"), make("w", lambda t, ctx: {"ok": False}, severity="warning")], RunContext())
    assert [r.status for r in results] == ["pass", "warn"]
    assert verdict(results) == ("warn", ExitCode.PASS)  # a pass, short only of warnings


def test_could_not_check_is_error_and_a_probe_bug_is_error_too():
    def cannot(timeout, ctx):
        raise CheckError("cannot run: xyz not found")

    def buggy(timeout, ctx):
        return {}["nope"]

    assert run_check(make(probe=cannot, retries=3)).message == "cannot run: xyz not found"
    result = run_check(make(probe=buggy))
    assert result.status == "error"
    assert result.message.startswith("internal error in test probe: KeyError")


def test_a_probe_that_ignores_its_timeout_is_abandoned():
    started = time.monotonic()
    results = run_checks([make("stuck", sleeper(30), timeout=0.2), make("fine")], RunContext())
    assert time.monotonic() - started < 4
    assert results[0].status == "fail"
    assert results[0].message.startswith("timed out: the probe did not return within 2.2s")
    assert results[1].status == "pass"


def test_the_run_deadline_fails_what_is_still_running_and_not_started():
    checks = [make("c%d" % i, sleeper(5), timeout=10) for i in range(3)]
    started = time.monotonic()
    results = run_checks(checks, RunContext(concurrency=2, deadline_s=0.4))
    assert time.monotonic() - started < 1.5
    assert [r.status for r in results] == ["fail"] * 3
    assert all(r.message == "deadline exceeded (--deadline 0.4s)" for r in results)
    assert [r.attempts for r in results] == [1, 1, 0]  # two were running, one never started
    assert 350 < results[0].duration_ms < 1000 and results[2].duration_ms == 0


def test_the_deadline_shortens_each_attempts_timeout():
    seen = []
    run_checks([make(probe=lambda t, ctx: seen.append(t) or {"ok": True}, timeout=10)],
               RunContext(deadline_s=2))
    assert 0 < seen[0] <= 2


def test_an_error_fact_fails_unless_a_condition_is_about_it():
    facts = {"connected": False, "error": "connection refused"}
    assert judge([expect.parse("connected == false")], facts) == ["connection refused"]
    assert judge([expect.parse("error contains refused")], facts) == []


def test_no_data_is_judged_by_the_checks_on_no_data_where_expectations_are():
    empty = lambda t, ctx: {"count": 0, "no_data": "no data"}  # noqa: E731
    result = run_check(make(probe=empty, expect_=("value > 1",), on_no_data="pass"))
    assert (result.status, result.message) == ("pass", "no data (on_no_data = pass)")
    assert judge([expect.parse("count == 0")], empty(1, None), on_no_data="fail") == ["no data"]
    assert judge([expect.parse("count == 0")], empty(1, None)) == []  # "expect": the conditions judge it
    result = run_check(make(probe=empty, on_no_data="error"))
    assert (result.status, result.message) == ("error", "no data")


def test_selection_by_tag_skip_tag_and_name():
    checks = [make("a", tags=("hourly",)), make("b", tags=("daily", "slow")), make("c")]
    chosen, skipped = select(checks, tags=["hourly"])
    assert [c.name for c in chosen] == ["a"]
    assert [(r.name, r.status, r.message) for r in skipped][0] == ("b", "skip", "not selected (--tag hourly)")
    chosen, skipped = select(checks, skip_tags=["slow"])
    assert [c.name for c in chosen] == ["a", "c"]
    assert skipped[0].message == "not selected (--skip-tag slow)"
    chosen, _ = select(checks, only=["c", "b"])
    assert [c.name for c in chosen] == ["b", "c"]


def test_report_facts_are_excerpts():
    facts = excerpt({"body": "x" * 10000, "json": {"k": list(range(2000))}, "status": 200})
    assert facts["status"] == 200
    assert facts["body"].startswith("x" * 2048) and facts["body"].endswith("(7952 more characters)")
    assert isinstance(facts["json"], str) and "more characters" in facts["json"]


def test_registries_are_pinned():
    import smoke
    from checks.kinds import KINDS
    from checks.render import RENDERERS

    assert list(KINDS) == ["http", "tcp", "command", "process", "docker", "resources", "prometheus", "file", "log",
                           "suite"]
    assert list(RENDERERS) == ["json", "text", "junit", "prometheus", "nagios", "tap"]
    assert list(smoke.COMMANDS) == ["health", "deploy", "heartbeat", "perf", "rollback", "all"]
    for kind in KINDS:
        from checks.kinds import module
        mod = module(kind)
        assert mod.NAME == kind
        assert mod.__doc__ and callable(mod.load) and callable(mod.probe) and callable(mod.target)
        assert mod.DEFAULT_EXPECT is None or all(expect.parse(t) for t in mod.DEFAULT_EXPECT)


def test_a_warning_check_stays_a_warning_whoever_ends_it():
    results = run_checks([make("w", sleeper(5), severity="warning", timeout=10)], RunContext(deadline_s=0.3))
    assert results[0].status == "warn" and results[0].message.startswith("deadline exceeded")
    assert verdict(results) == ("warn", ExitCode.PASS)


def test_secrets_are_masked_before_anything_is_cut_short():
    secret = "TOPSECRETVALUE123"
    facts = {"stdout": "x" * 70 + secret, "body": "y" * 2040 + secret}
    result = run_check(make(probe=lambda t, ctx: facts, expect_=("stdout == nope",)),
                     RunContext(redact=lambda v: Secrets([secret]).redact(v)))
    shown = json.dumps(result.to_dict())
    assert "TOPSEC" not in shown and "***" in result.message


# --- through smoke.py: the verdict on the real facts; fd and memory limits -------------------

TOKEN = "t0k3n/with+plus=and\"quote"


def test_a_condition_that_held_on_a_secret_is_not_listed_as_failing(service, tmp_path):
    path = config(tmp_path, [{"name": "echo", "kind": "http", "url": service + "/echo", "bearer_token": TOKEN,
                              "expect": ["json.headers.authorization contains Bearer", "status == 201"]}])
    done = smoke("health", "--config", path)
    result = report_of(done)["results"][0]
    assert result["message"] == "status: expected == 201, got 200"
    assert result["facts"]["json"]["headers"]["authorization"] == "***"


def with_fd_limit(limit):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def test_a_low_fd_limit_fits_the_concurrency_and_all_checks_pass(service, tmp_path):
    http = config(tmp_path, [{"name": "h%d" % i, "kind": "http", "url": service + "/health"} for i in range(240)])
    done = smoke("health", "--config", http, "--concurrency", "128", preexec_fn=with_fd_limit(64))
    assert done.returncode == 0, (report_of(done)["summary"], done.stderr)
    assert "this process may open only 64 files" in done.stderr
    commands = tmp_path / "commands.json"
    commands.write_text(json.dumps({"health": {"checks": [
        {"name": "c%d" % i, "kind": "command", "command": ["sh", "-c", "echo hi"], "expect": ["stdout matches h+i"]}
        for i in range(40)]}}))
    done = smoke("health", "--config", str(commands), preexec_fn=with_fd_limit(64))
    assert done.returncode == 0, report_of(done)["summary"]


def test_running_out_of_file_descriptors_is_exit_3_never_1(tmp_path):
    commands = tmp_path / "commands.json"
    commands.write_text(json.dumps({"health": {"checks": [
        {"name": "c%d" % i, "kind": "command", "command": ["true"]} for i in range(20)]}}))
    done = smoke("health", "--config", str(commands), preexec_fn=with_fd_limit(9))
    report = report_of(done)
    assert report["summary"]["error"] > 0 and report["summary"]["fail"] == 0
    assert done.returncode == 3 and report["status"] == "error"
    assert "Too many open files" in json.dumps(report)


def test_out_of_memory_reading_a_body_is_an_error_not_a_fail(service, tmp_path):
    path = config(tmp_path, [{"name": "big", "kind": "http", "url": service + "/fault/huge",
                              "max_body": 1024 * 1024 * 1024, "timeout": 30}])
    limit = 400 * 1024 * 1024
    done = smoke("health", "--config", path,
                 preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    result = report_of(done)["results"][0]
    assert result["status"] == "error" and "out of memory in the http probe" in result["message"], result
    assert done.returncode == 3 and "Traceback" not in done.stderr


# --- the tool's own limits are its errors, on every Python ------------------------------------

def pythons():
    """Each CPython 3.8-3.13 this machine has (pyenv's), else the one running the tests."""
    import glob
    found = {}
    for path in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python"))):
        version = path.split("/versions/")[1].split("/")[0]
        minor = tuple(int(part) for part in version.split(".")[:2])
        if (3, 8) <= minor <= (3, 13):
            found[minor] = path
    return list(found.values()) or [sys.executable]


@pytest.mark.parametrize("python", pythons(), ids=lambda p: p.split("/versions/")[-1].split("/")[0])
def test_a_concurrency_probe_beyond_ulimit_n_is_exit_3_naming_the_limit_never_an_abort(python, service, tmp_path):
    done = subprocess.run([python, SMOKE, "deploy", "--predict-url", service + "/health", "--concurrency", "1000",
                           "--state-dir", str(tmp_path / "s")], capture_output=True, text=True, timeout=120,
                          preexec_fn=with_fd_limit(256))
    assert done.returncode == 3, (done.returncode, done.stderr[-300:])  # it was SIGABRT (134) on 3.8
    assert "concurrency 1000 needs about 2000 open files; this process may open only 256 (ulimit -n)" in \
        report_of(done)["results"][0]["message"]


SYSTEM_PYTHON = "/usr/bin/python3"  # one nobody may run (pyenv's live in root's home)


def _nobodys_threads():
    """Threads nobody has now: ulimit -u counts them with the run's (other tests and services
    may run as nobody), so a limit is set this many above them."""
    count = 0
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/status" % entry) as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        if fields.get("Uid", "").split()[:1] == ["65534"]:
            count += int(fields.get("Threads", "1"))
    return count


@pytest.mark.serial  # nobody's threads are counted machine-wide
@pytest.mark.skipif(os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="needs root and %s to run as nobody: root has no thread limit (ulimit -u)" % SYSTEM_PYTHON)
def test_a_thread_limit_runs_fewer_at_once_and_no_thread_at_all_is_an_error():
    import shutil
    import tempfile
    from pathlib import Path
    tmp_path = Path(tempfile.mkdtemp(prefix="smoke-nobody-"))  # one nobody can reach (pytest's is root's alone)
    os.chown(str(tmp_path), 65534, 65534)
    http = tmp_path / "many.json"
    http.write_text(json.dumps({"health": {"checks": [
        {"name": "c%d" % i, "kind": "tcp", "address": "127.0.0.1:1"} for i in range(60)]}}))

    def as_nobody(threads):
        def become():
            resource.setrlimit(resource.RLIMIT_NPROC, (threads + others, threads + others))
            os.setgid(65534)
            os.setuid(65534)
        return become
    others = _nobodys_threads()
    for threads, code in ((6, 1), (1, 3)):  # a few: fewer at once, every check judged; one: none to be had
        done = subprocess.run([SYSTEM_PYTHON, SMOKE, "health", "--config", str(http), "--concurrency", "32",
                               "--state-dir", str(tmp_path / ("s%d" % threads))], capture_output=True, text=True,
                              timeout=60, preexec_fn=as_nobody(threads), cwd="/")
        assert done.returncode == code and "Traceback" not in done.stderr, (threads, done.stderr[-300:])
        report = report_of(done)
        if code == 1:
            assert report["summary"]["fail"] == 60
        else:
            assert "can't start new thread" in report["results"][0]["message"], report["results"][0]
    shutil.rmtree(str(tmp_path))


@pytest.mark.serial  # nobody's threads are counted machine-wide
@pytest.mark.skipif(os.geteuid() != 0 or not os.access("/usr/bin/python3", os.X_OK),
                    reason="needs root, to run as nobody under a thread limit (root has none), and /usr/bin/python3")
def test_a_thread_limit_is_an_error_never_a_failure_of_the_target(service, tmp_path):
    """Under ulimit -u, wherever the thread that cannot start is (the pool's, the http probe's
    deadline guard), the check is an error (exit 3) or runs: never the target's fail."""
    urls = [arg for i in range(3) for arg in ("--url", service + "/health?%d" % i)]
    seen, others = set(), _nobodys_threads()
    for limit in range(others + 1, others + 9):
        def as_nobody(limit=limit):
            os.setgid(65534)
            os.setgroups([])
            resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
            os.setuid(65534)
        done = subprocess.run(["/usr/bin/python3", SMOKE, "health", "--concurrency", "3"] + urls,
                              capture_output=True, text=True, timeout=60, preexec_fn=as_nobody, cwd="/",
                              env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})  # no history: a problem line
        report = report_of(done)
        statuses = {r["status"] for r in report["results"]}
        seen |= statuses
        assert "fail" not in statuses and done.returncode in (0, 3), (limit, report["results"])
        assert "Traceback" not in done.stderr, done.stderr
    assert "error" in seen, "no limit was tight enough to refuse a thread"


@pytest.mark.serial  # it keeps two CPUs busy on purpose
def test_results_that_come_while_the_pool_grows_are_never_lost(service):
    """A quick failure and a pass, sixty runs on a busy machine: a worker may finish its last
    check and leave while the main thread grows the pool; its result is collected, never
    taken for a pool left without workers ("not run: cannot start a thread", exit 3): it
    was, in one run of six."""
    burners = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 60\nwhile time.time() < end: pass"])
               for _ in range(2)]
    try:
        codes = [smoke("health", "--url", service + "/health", "--name", "api", "--tcp", "127.0.0.1:1", "--name", "db",
                       "--quiet").returncode for _ in range(60)]
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert set(codes) == {1}, codes
