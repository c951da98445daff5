"""The CLI as users meet it: in-process main([...]) for speed, subprocesses for real exit codes,
streams (closed, full, non-blocking) and signals, against the fixture service on 127.0.0.1;
running unattended (--jitter, --quiet)."""

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time

import pytest

import smoke
from conftest import NEUTRAL, ROOT, config, read_terminal, strict_json
from conftest import smoke as smoke_run  # here `smoke` is the smoke.py module, for main()

SMOKE = str(ROOT / "smoke.py")


def run(*args, env=None, cwd=None, timeout=30, **kw):
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("SMOKE_CONFIG", None) if env is None or "SMOKE_CONFIG" not in env else None
    return subprocess.run([sys.executable, SMOKE] + list(args), capture_output=True, text=True,
                          env=full_env, cwd=cwd or str(NEUTRAL / "cwd"), timeout=timeout, **kw)


def write_config(tmp_path, checks, name="smoke.json", **section):
    path = tmp_path / name
    path.write_text(json.dumps({"health": dict(section, checks=checks)}))
    return str(path)


def main(capsys, *args):
    code = smoke.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- help, version, the report -------------------------------------------------------------

def test_help_and_version_work_without_a_config():
    for args in (["--help"], ["health", "--help"], ["all", "--help"]):
        done = run(*args)
        assert done.returncode == 0 and "usage: smoke.py" in done.stdout, args
    assert run("--version").stdout.strip() == "smoke.py 0.1.0"
    assert "exit codes: 0 pass, 1 fail" in run("--help").stdout


def test_no_command_is_a_usage_error():
    done = run()
    assert done.returncode == 2 and "required" in done.stderr


def test_url_check_passes_with_a_full_report(capsys, service):
    code, out, err = main(capsys, "health", "--url", service + "/health", "--expect", "json.status == healthy",
                          "--expect", "latency_ms < 2000", "--name", "a2a")
    report = json.loads(out)
    assert code == 0 and err == ""
    assert report["schema"] == "smoke.report/1"
    assert report["tool"] == {"name": "smoke.py", "version": "0.1.0"}
    assert (report["command"], report["status"], report["exit_code"]) == ("health", "pass", 0)
    assert report["summary"] == {"total": 1, "pass": 1, "warn": 0, "fail": 0, "error": 0, "skip": 0,
                                 "pass_rate": 1.0}
    assert report["started_at"].endswith("Z") and report["duration_ms"] > 0
    result = report["results"][0]
    assert (result["name"], result["kind"], result["status"], result["attempts"]) == ("a2a", "http", "pass", 1)
    assert result["facts"]["json"] == {"status": "healthy", "agents_loaded": 15}


def test_a_failed_expectation_explains_itself_and_exits_1(capsys, service):
    code, out, _ = main(capsys, "health", "--url", service + "/health", "--expect", "json.agents_loaded >= 16")
    assert code == 1
    assert json.loads(out)["results"][0]["message"] == "json.agents_loaded: expected >= 16, got 15"


def test_only_errors_exit_3(capsys, tmp_path):
    path = write_config(tmp_path, [{"name": "x", "kind": "command", "command": ["no-such-binary-xyz"]}])
    code, out, _ = main(capsys, "health", "--config", path)
    assert code == 3
    assert json.loads(out)["results"][0]["message"] == "cannot run: no-such-binary-xyz not found"


def test_tcp_and_resources_flags(capsys, service):
    address = service.split("//")[1]
    code, out, _ = main(capsys, "health", "--tcp", address, "--resources", "--expect", "memory_percent < 100")
    kinds = [(r["kind"], r["status"]) for r in json.loads(out)["results"]]
    assert code == 0 and kinds == [("tcp", "pass"), ("resources", "pass")]


def test_timeout_and_retries_apply_to_flag_checks(capsys, service):
    started = time.monotonic()
    code, out, _ = main(capsys, "health", "--url", service + "/fault/hang", "--timeout", "0.3", "--retries", "1")
    result = json.loads(out)["results"][0]
    assert code == 1 and time.monotonic() - started < 3
    assert result["attempts"] == 2 and result["message"] == "timed out after 0.3s (2 attempts)"


def test_text_format_has_one_line_per_check_and_evidence(capsys, service):
    code, out, _ = main(capsys, "health", "--format", "text", "--url", service + "/health", "--name", "ok",
                        "--url", service + "/fault/500", "--name", "broken")
    lines = out.splitlines()
    assert code == 1
    assert lines[1].startswith("PASS  ok ") and lines[2].startswith("FAIL  broken ")
    assert lines[3].strip() == "status: expected < 400, got 500"
    assert any(line.strip().startswith('body: {"status": "error"}') for line in lines)
    assert lines[-1].startswith("FAIL  2 checks: 1 pass, 0 warn, 1 fail, 0 error, 0 skip (pass rate 0.50)")
    assert lines[-1].endswith("exit 1")


# --- config: where it comes from, what it may say ------------------------------------------

def test_config_from_flag_env_and_current_directory(tmp_path, service):
    write_config(tmp_path, [{"name": "here", "kind": "http", "url": service + "/health"}])
    done = run("health", cwd=str(tmp_path))
    assert done.returncode == 0 and json.loads(done.stdout)["results"][0]["name"] == "here"
    other = tmp_path / "sub"
    other.mkdir()
    env_path = write_config(other, [{"name": "from-env", "kind": "http", "url": service + "/health"}], "x.json")
    done = run("health", cwd=str(tmp_path), env={"SMOKE_CONFIG": env_path})
    assert json.loads(done.stdout)["results"][0]["name"] == "from-env"
    done = run("health", "--config", str(tmp_path / "smoke.json"), cwd=str(other), env={"SMOKE_CONFIG": env_path})
    assert json.loads(done.stdout)["results"][0]["name"] == "here"


def test_no_config_anywhere_is_a_usage_error(tmp_path):
    done = run("health", cwd=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("smoke.py: error: nothing to check: no config found")
    assert done.stdout == ""


def test_toml_config_where_tomllib_exists(tmp_path, service):
    path = tmp_path / "smoke.toml"
    path.write_text('[[health.checks]]\nname = "t"\nkind = "http"\nurl = "%s/health"\n' % service)
    done = run("health", "--config", str(path))
    if sys.version_info >= (3, 11):
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 2 and "TOML needs Python 3.11" in done.stderr


@pytest.mark.parametrize("config, message", [
    ('{"health": {"checks": [{"name": "x", "kind": "htp", "url": "http://h"}]}}',
     "health.checks[0].kind: unknown kind 'htp' (did you mean 'http'?) (known: http, tcp, command, process, docker, resources, "
     "prometheus, file, log, suite)"),
    ('{"health": {"checks": [{"name": "x", "kind": "http"}]}}', "health.checks[0].url: required field is missing"),
    ('{"health": {"checks": [{"name": "x", "kind": "http", "url": "http://h", "timeout": "ten"}]}}',
     'health.checks[0].timeout: expected a number, got a string "ten"'),
    ('{"health": {"checks": [{"name": "x", "kind": "http", "url": "http://h", "expect": ["status =~ 2"]}]}}',
     "health.checks[0].expect[0]: unknown operator '=~' at column 8"),
    ('{"health": {"checks": [{"name": "x", "kind": "http", "url": "http://h", "severity": "high"}]}}',
     'health.checks[0].severity: expected one of critical, normal, warning, got a string "high"'),
    ('{"health": {"checks": [{"name": "x", "kind": "http", "url": "http://h", "retires": 2}]}}',
     "health.checks[0].retires: unknown field (did you mean 'retries'?)"),
    ('{"health": {"checks": [{"name": "x", "kind": "tcp", "address": "h:1"},'
     ' {"name": "x", "kind": "tcp", "address": "h:2"}]}}',
     "health.checks[1].name: 'x' is used twice; names must be unique"),
    ('{"helth": {}}', "unknown section 'helth' (did you mean 'health'?) (known: health, deploy, heartbeat, perf, rollback)"),
    ('{"health": {"checks": []}}', "nothing to check"),
    ('{"health": {"checks": [{"kind": "http", "url": "${NOPE_NOT_SET}"}]}}',
     "health.checks[0].url: environment variable NOPE_NOT_SET is not set"),
    ('{"health": {\n  "checks": [,]\n}}', ":2:14: invalid JSON: Expecting value"),
])
def test_bad_config_is_one_line_exit_2_and_nothing_runs(tmp_path, config, message):
    path = tmp_path / "bad.json"
    path.write_text(config)
    done = run("health", "--config", str(path))
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_bad_flags_are_usage_errors(capsys):
    assert main(capsys, "health", "--url", "ftp://x")[0] == 2
    code, _, err = main(capsys, "health", "--url", "http://127.0.0.1:1/", "--expect", "status ==")
    assert code == 2 and err.strip() == "smoke.py: error: --expect 'status ==': expected a value after '==' at column 10"
    with pytest.raises(SystemExit) as exc:
        smoke.main(["health", "--expect", "status == 200"])
    assert exc.value.code == 2
    assert "--expect must come after the --url" in capsys.readouterr().err
    code, _, err = main(capsys, "health", "--config", "/nonexistent/smoke.json")
    assert code == 2 and "cannot read config" in err


def test_validate_checks_and_runs_nothing(capsys, tmp_path):
    path = write_config(tmp_path, [{"name": "x", "kind": "http", "url": "http://127.0.0.1:1/"}])
    code, out, err = main(capsys, "health", "--validate", "--config", path)
    assert (code, out, err.strip()) == (0, "", "config OK: 1 check")


def test_validate_and_dry_run_refuse_what_a_run_would_refuse_and_make_nothing(tmp_path):
    """--validate says "config OK" only where the same command line would run: report files,
    --lock, the selection and --state-dir are checked as a run checks them (exit 2), and no
    file or directory is made."""
    path = write_config(tmp_path, [{"name": "x", "kind": "tcp", "address": "127.0.0.1:1"}])
    lock = tmp_path / "old.lock"
    lock.write_text("pid 1 since 2026-01-01T00:00:00Z\n")
    for flags, said in ((["--output", "/nonexistent/x.json"], "--output /nonexistent/x.json: the directory does not"),
                        (["--junit", str(tmp_path)], "is a directory"),
                        (["--lock", "/nonexistent/l"], "--lock /nonexistent/l: No such file or directory"),
                        (["--lock", path], "exists and is not a lock file"),
                        (["--tag", "nightly"], "the selection matched none of the 1 checks"),
                        (["--state-dir", str(tmp_path / "smoke.json" / "s")], "--state-dir")):
        for mode in ("--validate", "--dry-run", None):
            done = run("health", "--config", path, *flags, *([mode] if mode else []))
            assert done.returncode == 2 and said in done.stderr and done.stderr.count("\n") == 1, (flags, mode,
                                                                                                done.stderr)
    fresh = tmp_path / "new"
    fresh.mkdir()
    for lock_file in (fresh / "l.lock", lock):  # a new one is not made; one there is a lock file
        done = run("health", "--config", path, "--validate", "--output", str(fresh / "r.json"), "--lock",
                   str(lock_file), "--state-dir", str(fresh / "state"))
        assert done.returncode == 0 and done.stderr == "config OK: 1 check\n" and os.listdir(str(fresh)) == []
    import fcntl
    with open(str(lock), "r+") as held:  # a run going on holds it: --validate still says OK, a run exits 3
        fcntl.flock(held, fcntl.LOCK_EX)
        assert run("health", "--config", path, "--validate", "--lock", str(lock)).returncode == 0
        assert run("health", "--config", path, "--lock", str(lock)).returncode == 3


def test_a_report_file_that_is_the_config_file_is_exit_2_before_anything_runs(tmp_path):
    """--output (or --junit, --prom, --tap) naming the config, a link to it or another name of
    it (a hard link) would replace it: exit 2, the config untouched and nothing run."""
    ran = tmp_path / "ran"
    path = tmp_path / "smoke.json"
    touch = {"name": "c", "kind": "command", "command": ["touch", str(ran)]}
    path.write_text(json.dumps({"health": {"checks": [touch]}}))
    before = path.read_text()
    os.symlink(str(path), str(tmp_path / "link.json"))
    os.link(str(path), str(tmp_path / "hard.json"))
    os.mkdir(str(tmp_path / "sub"))
    for flag, target in (("--output", str(path)), ("--junit", str(tmp_path / "link.json")),
                         ("--prom", str(tmp_path / "hard.json")),
                         ("--tap", str(tmp_path / "sub" / ".." / "smoke.json"))):
        for mode in ([], ["--validate"]):
            done = run("health", "--config", str(path), flag, target, *mode)
            assert done.returncode == 2 and "%s %s: is the config file (%s)" % (flag, target, path) in done.stderr
            assert path.read_text() == before and not ran.exists()
    done = run("health", "--config", str(path), "--output", str(tmp_path / "r.json"))
    assert done.returncode == 0 and ran.exists() and path.read_text() == before


def test_a_report_file_that_is_a_config_a_run_would_find_is_exit_2(tmp_path, service):
    """health --url ... --output smoke.json beside ./smoke.json (the report's name is an easy
    slip): the config that the next `smoke.py all` reads is never replaced with a report; nor
    the one $SMOKE_CONFIG names."""
    here = tmp_path / "here"
    here.mkdir()
    config = here / "smoke.json"
    config.write_text(json.dumps({"health": {"checks": [{"name": "up", "kind": "http", "url": service + "/health"}]}}))
    before = config.read_text()
    done = run("health", "--url", service + "/health", "--output", "smoke.json", cwd=str(here))
    assert done.returncode == 2 and "--output smoke.json: is a config a run without --config reads (smoke.json)" \
        in done.stderr and config.read_text() == before, done.stderr
    elsewhere = tmp_path / "env.json"
    elsewhere.write_text(before)
    done = run("health", "--url", service + "/health", "--junit", str(elsewhere), env={"SMOKE_CONFIG": str(elsewhere)})
    assert done.returncode == 2 and "is a config a run without --config reads" in done.stderr, done.stderr
    assert elsewhere.read_text() == before
    assert run("health", "--url", service + "/health", "--output", "r.json", cwd=str(here)).returncode == 0


def test_dry_run_prints_what_would_run(capsys, tmp_path):
    path = write_config(tmp_path, [{"name": "x", "kind": "tcp", "address": "127.0.0.1:1", "tags": ["daily"]},
                                   {"name": "y", "kind": "tcp", "address": "127.0.0.1:2"}])
    code, out, _ = main(capsys, "health", "--dry-run", "--config", path, "--skip-tag", "daily")
    assert code == 0 and out.split() == ["health", "y", "127.0.0.1:2", "[connected", "==", "true]",
                                         "timeout=10s", "retries=0"]


# --- selection, verdict, output ------------------------------------------------------------

def test_selection_flags_and_skips_in_the_report(capsys, tmp_path, service):
    checks = [{"name": "a", "kind": "http", "url": service + "/health", "tags": ["hourly"]},
              {"name": "b", "kind": "http", "url": service + "/fault/500", "tags": ["daily"]}]
    path = write_config(tmp_path, checks)
    code, out, _ = main(capsys, "health", "--config", path, "--tag", "hourly")
    report = json.loads(out)
    assert code == 0 and [r["status"] for r in report["results"]] == ["pass", "skip"]
    assert main(capsys, "health", "--config", path, "--only", "b")[0] == 1
    code, _, err = main(capsys, "health", "--config", path, "--only", "zz")
    assert code == 2 and "--only zz: no such check (known: a, b)" in err
    code, _, err = main(capsys, "health", "--config", path, "--tag", "weekly")
    assert code == 2 and "the selection matched none of the 2 checks" in err


def test_min_pass_rate_and_critical(capsys, tmp_path, service):
    checks = [{"name": "n%d" % i, "kind": "http", "url": service + "/health"} for i in range(3)]
    checks.append({"name": "bad", "kind": "http", "url": service + "/fault/500"})
    path = write_config(tmp_path, checks)
    assert main(capsys, "health", "--config", path, "--min-pass-rate", "0.75")[0] == 0
    assert main(capsys, "health", "--config", path, "--min-pass-rate", "0.8")[0] == 1
    checks[-1]["severity"] = "critical"
    path = write_config(tmp_path, checks)
    assert main(capsys, "health", "--config", path, "--min-pass-rate", "0.5")[0] == 1


def test_output_is_written_atomically_and_quiet_is_quiet(capsys, tmp_path, service):
    target = tmp_path / "report.json"
    code, out, err = main(capsys, "health", "--url", service + "/health", "--output", str(target), "--quiet")
    assert (code, out, err) == (0, "", "")
    assert json.loads(target.read_text())["status"] == "pass"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind
    code, out, _ = main(capsys, "health", "--url", service + "/fault/500", "--output", str(target), "--quiet")
    assert code == 1 and json.loads(out)["status"] == "fail" == json.loads(target.read_text())["status"]
    code, _, err = main(capsys, "health", "--url", service + "/health", "--output", str(tmp_path / "no" / "r.json"))
    assert code == 2 and "the directory does not exist" in err


def test_secrets_never_reach_the_report(capsys, tmp_path, service, monkeypatch):
    monkeypatch.setenv("SMOKE_TEST_TOKEN", "wrong-token-value")
    checks = [{"name": "bearer", "kind": "http", "url": service + "/auth/bearer",
               "bearer_token": "${SMOKE_TEST_TOKEN}", "expect": ["status == 200"]},
              {"name": "echo", "kind": "http", "url": service + "/echo",
               "headers": {"X-Api-Key": "literal-api-key-123"}, "expect": ["body contains nothing-such"]}]
    code, out, _ = main(capsys, "health", "--config", write_config(tmp_path, checks))
    assert code == 1
    assert "wrong-token-value" not in out and "literal-api-key-123" not in out
    assert "***" in out


def test_all_runs_every_section(capsys, tmp_path, service):
    path = write_config(tmp_path, [{"name": "a", "kind": "http", "url": service + "/health"}])
    code, out, _ = main(capsys, "all", "--config", path)
    report = json.loads(out)
    assert code == 0 and report["command"] == "all" and report["results"][0]["section"] == "health"


def test_deadline_bounds_the_whole_run(capsys, service):
    started = time.monotonic()
    code, out, _ = main(capsys, "health", "--url", service + "/fault/hang", "--url", service + "/health",
                        "--deadline", "0.5")
    statuses = [r["status"] for r in json.loads(out)["results"]]
    assert code == 1 and statuses == ["fail", "pass"] and time.monotonic() - started < 2


# --- processes, streams and signals --------------------------------------------------------

@pytest.mark.parametrize("signum, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_writes_the_partial_report(tmp_path, service, signum, code, name):
    target = tmp_path / "partial.json"
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--url", service + "/health", "--name", "done",
                             "--url", service + "/fault/hang", "--name", "hung", "--timeout", "30",
                             "--output", str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let the first check finish and the second hang
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == code, err
    for report in (json.loads(out), json.loads(target.read_text())):
        assert report["interrupted"] == name and report["exit_code"] == code
        assert [(r["name"], r["status"]) for r in report["results"]] == [("done", "pass"), ("hung", "skip")]
        assert report["results"][1]["message"] == "interrupted by %s" % name


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_command_that_runs_no_check_ends_on_a_signal_with_its_code(tmp_path, signum, code):
    """snapshot (as history and summary, through the same door) asking a listener that never
    answers: SIGTERM and SIGHUP end it at once with 143 and 129, said in a line, and the
    --output it was to write is not there half-written."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the backlog; nothing ever answers
    output = tmp_path / "snap.json"
    proc = subprocess.Popen([sys.executable, SMOKE, "snapshot", "--ports", str(silent.getsockname()[1]), "--skip",
                             "docker,host", "--timeout", "30", "--output", str(output)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        proc.send_signal(signum)
        started = time.monotonic()
        out, err = proc.communicate(timeout=15)
    finally:
        silent.close()
    assert proc.returncode == code and time.monotonic() - started < 5, err
    assert err.splitlines()[-1] == "smoke.py snapshot: stopped by %s" % signal.Signals(signum).name
    assert not output.exists() and os.listdir(str(tmp_path)) == []


def test_json_5000_levels_deep_is_facts_whatever_the_stack_limit(service):
    """ulimit -s 128: a worker thread's stack is its own size, not the limit's, so the deep
    answer is the check's facts (as with the usual 8 MB), never a SIGSEGV with no report."""
    import resource

    def small_stack():
        resource.setrlimit(resource.RLIMIT_STACK, (128 << 10, resource.getrlimit(resource.RLIMIT_STACK)[1]))
    done = subprocess.run([sys.executable, SMOKE, "health", "--url", service + "/hostile/deep"],
                          capture_output=True, text=True, timeout=60, preexec_fn=small_stack, cwd=str(NEUTRAL))
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert json.loads(done.stdout)["results"][0]["status"] == "pass"


def test_a_killed_command_takes_its_children_with_it(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = "import os,subprocess,sys,time; p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);" \
             "open(%r,'w').write(str(p.pid)); time.sleep(60)" % str(pidfile)
    path = write_config(tmp_path, [{"name": "c", "kind": "command", "command": [sys.executable, "-c", script],
                                    "timeout": 30}])
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--config", path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 143
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not os.path.exists("/proc/%d" % child) or "Z" in open("/proc/%d/stat" % child).read().split()[2]


def test_broken_pipe_ends_quietly(service):
    """The reader is gone before the report is written (the check takes 300 ms)."""
    done = subprocess.run("%s %s health --url %s/delay/300 | true; echo \"rc=${PIPESTATUS[0]}\""
                          % (sys.executable, SMOKE, service), shell=True, executable="/bin/bash",
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "rc=0" and done.stderr == ""


def test_two_quick_signals_still_write_the_report(tmp_path, service):
    target = tmp_path / "partial.json"
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--url", service + "/fault/hang", "--timeout", "30",
                             "--output", str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 143 and "Traceback" not in err
    assert json.loads(out)["interrupted"] == "SIGTERM" == json.loads(target.read_text())["interrupted"]


def test_the_report_is_utf8_whatever_the_locale(service):
    done = subprocess.run([sys.executable, SMOKE, "health", "--url", service + "/echo", "--expect", "body == x"],
                          capture_output=True, env=dict(os.environ, PYTHONIOENCODING="ascii"), timeout=30)
    report = json.loads(done.stdout.decode("utf-8"))
    assert done.returncode == 1 and report["results"][0]["message"].endswith("…")  # a long fact's excerpt mark


def on_a_terminal(*args, env=None):
    """Run smoke.py with stderr on a real pseudo-terminal; returns (stdout, what the terminal got)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, SMOKE] + list(args), stdout=subprocess.PIPE, stderr=slave,
                            env=dict(os.environ, **(env or {})))
    out, _ = proc.communicate(timeout=30)
    os.close(slave)
    terminal = os.read(master, 4096).decode()
    os.close(master)
    return out.decode(), terminal


def test_progress_lines_go_to_a_terminal_only(service):
    out, progress = on_a_terminal("health", "--url", service + "/health", "--name", "p")
    assert progress.startswith("\r[1/1] PASS  p (") and json.loads(out)["status"] == "pass"
    assert run("health", "--url", service + "/health").stderr == ""


def test_a_tcp_run_imports_neither_ssl_nor_http_client(service):
    probe = ("import sys, runpy; sys.argv = ['smoke.py', 'health', '--tcp', %r, '--quiet']\n"
             "try:\n    runpy.run_path(%r, run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
             "print(code, 'ssl' in sys.modules, 'http.client' in sys.modules)") % (service.split("//")[1], SMOKE)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=str(ROOT))
    assert done.stdout.split() == ["0", "False", "False"], done.stderr


def test_help_imports_nothing_beyond_argparse():
    """--help loads smoke.py's body (checks.main, whose code is cached where a script's is not)
    and nothing else of ours, and none of the slow modules a run needs."""
    probe = ("import sys, runpy, argparse; before = set(sys.modules); sys.argv = ['smoke.py', '--help']\n"
             "try:\n    runpy.run_path(%r, run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print(' '.join(sorted(set(sys.modules) - before)))") % SMOKE
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, cwd=str(ROOT))
    loaded = set(done.stdout.strip().splitlines()[-1].split())
    slow = {"json", "socket", "ssl", "http.client", "shutil", "threading", "subprocess"}
    assert not loaded & slow and {m for m in loaded if m.startswith("checks")} == {"checks", "checks.main"}, loaded


def test_dry_run_and_progress_lines_mask_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOKE_TEST_SECRET", "hunter2-value")
    path = write_config(tmp_path, [{"name": "c", "kind": "command", "command": ["echo", "token=${SMOKE_TEST_SECRET}"],
                                    "expect": ["exit_code == 1"]}])
    done = run("health", "--dry-run", "--config", path, env={"SMOKE_TEST_SECRET": "hunter2-value"})
    assert "hunter2-value" not in done.stdout and "token=***" in done.stdout
    out, progress = on_a_terminal("health", "--config", path, env={"SMOKE_TEST_SECRET": "hunter2-value"})
    assert progress.startswith("\r[1/1] FAIL  c (") and "hunter2-value" not in progress + out


def test_a_report_that_cannot_be_written_keeps_a_failure_at_1(capsys, tmp_path, service):
    code, out, err = main(capsys, "health", "--url", service + "/fault/500", "--output", "/dev/full")
    assert code == 1 and "cannot write /dev/full" in err and json.loads(out)["status"] == "fail"
    code, out, err = main(capsys, "health", "--url", service + "/health", "--output", "/dev/full")
    assert code == 3 and "cannot write /dev/full" in err and json.loads(out)["exit_code"] == 3
    blocked = tmp_path / "dir-not-file"
    blocked.mkdir()
    code, out, err = main(capsys, "health", "--url", service + "/health", "--output", str(blocked))
    assert code == 2 and out == "" and "is a directory" in err


@pytest.mark.parametrize("flag, value, message", [
    ("--timeout", "-1", "argument --timeout: must be at least 0.001, got -1"),
    ("--retries", "x", "argument --retries: expected a whole number, got 'x'"),
    ("--min-pass-rate", "5", "argument --min-pass-rate: must be between 0 and 1, got 5"),
    ("--deadline", "0", "argument --deadline: must be at least 0.001, got 0"),
    ("--concurrency", "0", "argument --concurrency: must be at least 1, got 0"),
])
def test_numeric_flags_out_of_range_are_usage_errors(flag, value, message):
    done = run("health", "--tcp", "127.0.0.1:1", flag, value)
    assert done.returncode == 2 and done.stderr.strip().endswith(message) and done.stdout == ""


def test_quiet_still_reports_an_interrupted_run(tmp_path, service):
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--url", service + "/fault/hang", "--timeout", "30",
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 143 and json.loads(out)["interrupted"] == "SIGTERM"


def test_a_secret_in_a_check_name_is_masked_on_the_terminal_too(tmp_path):
    path = write_config(tmp_path, [{"name": "c-${SMOKE_TEST_SECRET}", "kind": "tcp", "address": "127.0.0.1:1"}])
    out, progress = on_a_terminal("health", "--config", path, env={"SMOKE_TEST_SECRET": "hunter2-value"})
    assert progress.startswith("\r[1/1] FAIL  c-*** (") and "hunter2-value" not in progress + out


# --- what a new user hit first -------------------------------------------------------------

def test_progress_on_a_terminal_is_one_line_cleared_before_the_report(service):
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--format", "text", "--url", service + "/health",
                             "--name", "one", "--url", service + "/fault/500", "--name", "two"],
                            stdout=slave, stderr=slave, env=dict(os.environ, TERM="xterm"))
    proc.wait(30)
    os.close(slave)
    screen = read_terminal(master)
    text = screen.decode()
    progress, report = text[:text.index("smoke.py health")], text[text.index("smoke.py health"):]
    assert "[1/2]" in progress and "[2/2]" in progress and "\n" not in progress
    segments = progress.split("\r")  # ..., the last progress line, blanks over it, "" after the final \r
    assert segments[-1] == "" and set(segments[-2]) == {" "} and len(segments[-2]) >= len(segments[-3].rstrip())
    assert report.count("two ") == 1  # each result printed once, not once more as a progress line
    assert "\x1b[32mPASS" in report and "\x1b[31mFAIL" in report


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_no_color_and_dumb_terminals_get_no_colour(service, env):
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--format", "text", "--url", service + "/health"],
                            stdout=slave, stderr=subprocess.DEVNULL, env=dict(os.environ, **env))
    proc.wait(30)
    os.close(slave)
    out = os.read(master, 65536).decode()
    os.close(master)
    assert "PASS" in out and "\x1b[" not in out


def test_colour_never_reaches_a_pipe(service):
    done = run("health", "--format", "text", "--url", service + "/health")
    assert "\x1b[" not in done.stdout and done.stdout.splitlines()[1].startswith("PASS ")


def test_evidence_shows_the_facts_that_explain_a_miss(capsys, tmp_path, service):
    checks = [{"name": "flags", "kind": "file", "path": str(tmp_path / "missing.json")},
              {"name": "svc", "kind": "process", "pidfile": str(tmp_path / "svc.pid")},
              {"name": "api", "kind": "http", "url": service + "/health", "expect": ["json.status == degraded"]}]
    code, out, _ = main(capsys, "health", "--config", write_config(tmp_path, checks), "--format", "text")
    assert code == 1
    assert "      exists: expected == true, got false" in out
    assert "      pidfile_error: \"%s does not exist\"" % (tmp_path / "svc.pid") in out
    assert "      url: \"%s/health\"" % service in out
    assert "      status: 200" in out  # a json.status condition does not hide the status line


def test_min_pass_rate_in_the_config_top_level_section_and_flag(capsys, tmp_path, service):
    checks = [{"name": "ok", "kind": "http", "url": service + "/health"},
              {"name": "bad", "kind": "http", "url": service + "/fault/500"}]
    path = tmp_path / "smoke.json"
    for doc, code in (({"health": {"checks": checks}}, 1),
                      ({"min_pass_rate": 0.5, "health": {"checks": checks}}, 0),
                      ({"min_pass_rate": 0.5, "health": {"min_pass_rate": 0.9, "checks": checks}}, 1),
                      ({"health": {"min_pass_rate": 0.5, "checks": checks}}, 0)):
        path.write_text(json.dumps(doc))
        assert main(capsys, "health", "--config", str(path))[0] == code, doc
    assert main(capsys, "health", "--config", str(path), "--min-pass-rate", "1")[0] == 1  # the flag wins
    path.write_text(json.dumps({"health": {"min_pass_rate": 2, "checks": checks}}))
    code, _, err = main(capsys, "health", "--config", str(path))
    assert code == 2 and "%s: health.min_pass_rate: must be between 0 and 1, got 2" % path in err


def test_config_errors_name_the_file_in_use(capsys, tmp_path):
    path = write_config(tmp_path, [{"name": "x", "kind": "tcp", "address": "127.0.0.1:1", "timout": 3}])
    code, _, err = main(capsys, "health", "--config", path)
    assert code == 2 and err.strip() == ("smoke.py: error: %s: health.checks[0].timout: unknown field "
                                         "(did you mean 'timeout'?)" % path)


@pytest.mark.parametrize("args, hint", [(["health", "--urll", "http://x/"], "(did you mean --url?)"),
                                        (["healht", "--url", "http://x/"], "(did you mean health?)"),
                                        (["health", "--format", "txt", "--tcp", "h:1"], "(did you mean text?)")])
def test_flag_errors_are_two_lines_with_a_hint(args, hint):
    done = run(*args)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 2, done.stderr
    assert lines[0].startswith("usage: smoke.py") and lines[1].endswith(hint)


def test_the_demo_never_checks_someone_elses_server(tmp_path):
    """Something already listens on the demo's usual ports: the demo picks free ones and stays green."""
    squatters = []
    for port in (18765, 18766, 19090):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
            squatters.append(sock)
        except OSError:  # already taken by something else: just as good
            sock.close()
    try:
        done = subprocess.run([sys.executable, str(ROOT / "fixtures" / "demo.py"), "--dir", str(tmp_path / "demo")],
                              capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    finally:
        for sock in squatters:
            sock.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "18765" not in done.stdout and "\nWARN  30 checks" in done.stdout  # slow-endpoint is a warning
    assert "ROLLBACK: " in done.stdout.split("rollback.log has:")[1]  # and the rollback it shows was done


@pytest.mark.parametrize("text, environ, message", [
    ("${NGINX_URL}/health", {"NGINX_URL": ""},
     "health.checks[0].url: environment variable NGINX_URL is empty (give a default: ${NGINX_URL:-value}, "
     "or ${NGINX_URL:-} where empty is meant)"),
    ("http://h/${API_TOKEN", {"API_TOKEN": "x"},
     "health.checks[0].url: a '${' is not closed: write ${NAME} or ${NAME:-default} (or $${ for a literal ${)"),
])
def test_environment_mistakes_are_config_errors_naming_the_file(tmp_path, text, environ, message):
    path = write_config(tmp_path, [{"name": "x", "kind": "http", "url": text}])
    done = run("health", "--config", path, "--validate", env=environ)
    assert done.returncode == 2 and done.stderr.strip() == "smoke.py: error: %s: %s" % (path, message)


def test_secret_names_that_mark_nothing_are_errors(tmp_path):
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"secrets": ["API_TOKN"], "health": {"checks": [
        {"name": "x", "kind": "http", "url": "http://127.0.0.1:1/?t=${API_TOKEN}"}]}}))
    done = run("health", "--config", str(path), "--validate", env={"API_TOKEN": "abcdef"})
    assert done.returncode == 2 and "secrets[0]: no ${API_TOKN} in the config uses API_TOKN" in done.stderr
    done = run("health", "--tcp", "127.0.0.1:1", "--secret", "NO_SUCH_VAR_XYZ")
    assert done.returncode == 2 and "--secret NO_SUCH_VAR_XYZ: environment variable NO_SUCH_VAR_XYZ is not set" \
        in done.stderr


def test_selection_errors_say_how_to_fix_them(capsys, tmp_path):
    path = write_config(tmp_path, [{"name": "web-home", "kind": "tcp", "address": "127.0.0.1:1", "tags": ["hourly"]}])
    code, _, err = main(capsys, "health", "--config", path, "--only", "web-hom")
    assert code == 2 and "--only web-hom: no such check; did you mean web-home? (known: web-home)" in err
    code, _, err = main(capsys, "health", "--config", path, "--tag", "daily")
    assert code == 2 and "(--only and --tag must both match; tags: hourly)" in err


def test_a_dangling_output_link_names_where_it_points(tmp_path, service):
    link = tmp_path / "report.json"
    link.symlink_to(tmp_path / "gone" / "report.json")
    done = run("health", "--url", service + "/health", "--output", str(link))
    assert done.returncode == 2
    assert "%s (a link to %s): the directory does not exist" % (link, tmp_path / "gone" / "report.json") in done.stderr


def test_each_result_says_what_it_checked_and_the_report_its_pass_rate(capsys, tmp_path, service):
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"min_pass_rate": 0.5, "health": {"checks": [
        {"name": "api", "kind": "http", "url": service + "/echo", "expect": ["status == 200"]},
        {"name": "db", "kind": "tcp", "address": "127.0.0.1:1"}]}}))
    code, out, _ = main(capsys, "health", "--config", str(path))
    report = json.loads(out)
    assert code == 0 and report["min_pass_rate"] == {"health": 0.5}
    api, db = report["results"]
    assert (api["target"], api["expect"]) == ("GET %s/echo" % service, ["status == 200"])
    assert (db["target"], db["expect"]) == ("127.0.0.1:1", ["connected == true"])
    assert api["facts"]["json"]["headers"]["user-agent"].startswith("smoke.py/")


def test_operators_from_other_languages_get_ours_as_a_hint(capsys):
    code, _, err = main(capsys, "health", "--url", "http://127.0.0.1:1/", "--expect", "body not contains x")
    assert code == 2 and "(did you mean '!contains'?)" in err


@pytest.mark.parametrize("version", ["2.7", "3.6", "3.7"])
def test_an_old_python_is_told_what_is_needed(version):
    import glob
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python" % version)))
    if not found:
        pytest.skip("no python%s here" % version)
    done = subprocess.run([found[-1], SMOKE, "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.startswith("smoke.py needs Python 3.8 or newer; this is %s" % version)


# --- closed, full and non-blocking streams; bytes that are not UTF-8 -----------------------

@pytest.mark.parametrize("path, code", [("/health", 0), ("/fault/500", 1)])
def test_closed_and_full_streams_keep_the_verdicts_exit_code(service, path, code):
    url = service + path
    for redirect in ("2>&-", ">&-", ">&- 2>&-", ">/dev/full", "2>/dev/full", "<&-"):
        done = subprocess.run("%s %s health --url %s %s" % (sys.executable, SMOKE, url, redirect), shell=True,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == code, (redirect, done.stderr)
        assert "Traceback" not in done.stderr and "internal error" not in done.stderr, redirect
    done = subprocess.run("%s %s health --url %s >&-" % (sys.executable, SMOKE, url), shell=True,
                          capture_output=True, text=True, timeout=60)
    assert "stdout is closed: the report was not printed" in done.stderr


def test_help_into_a_closed_pipe_ends_quietly():
    done = subprocess.run("%s %s health --help | head -1" % (sys.executable, SMOKE), shell=True,
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.startswith("usage: smoke.py health") and done.stderr == ""


def test_help_works_without_docstrings():
    for args in (["--help"], ["health", "--help"]):
        done = subprocess.run([sys.executable, "-OO", SMOKE] + args, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and "usage: smoke.py" in done.stdout


def test_a_non_blocking_stdout_still_gets_the_whole_report(service, tmp_path):
    """Some CI runners and Node parents set O_NONBLOCK on the pipe: a plain write stops at 64 KiB."""
    path = config(tmp_path, [{"name": "c%d" % i, "kind": "http", "url": service + "/echo"} for i in range(300)])
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--config", path], stdout=writer)
    os.close(writer)
    chunks = []
    while True:
        time.sleep(0.001)
        chunk = os.read(reader, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(reader)
    assert proc.wait(60) == 0
    assert len(strict_json(b"".join(chunks).decode())["results"]) == 300


def test_a_name_from_non_utf8_environment_bytes_still_prints(tmp_path):
    path = config(tmp_path, [{"name": "api ${SITE}", "kind": "tcp", "address": "127.0.0.1:1"}])
    env = dict(os.environ)
    env_bytes = {k.encode(): v.encode() for k, v in env.items()}
    env_bytes[b"SITE"] = b"caf\xe9"
    for args in ([b"--dry-run"], []):
        done = subprocess.run([sys.executable.encode(), SMOKE.encode(), b"health", b"--config", path.encode()] + args,
                              capture_output=True, env=env_bytes, timeout=60)
        assert b"api caf" in done.stdout and done.stderr == b"", (args, done.stderr)


# --- running unattended: --jitter, --quiet -------------------------------------------------

def listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def test_jitter_waits_at_most_its_bound_and_is_bounded_itself(tmp_path):
    sock = listening()
    try:
        started = time.monotonic()
        done = smoke_run("health", "--tcp", "127.0.0.1:%d" % sock.getsockname()[1], "--jitter", "0.5", "--state-dir",
                         tmp_path)
        assert done.returncode == 0 and time.monotonic() - started < 5
    finally:
        sock.close()
    for bad in ("-1", "3601", "nan"):
        done = smoke_run("health", "--tcp", "127.0.0.1:1", "--jitter", bad)
        assert done.returncode == 2 and "--jitter" in done.stderr


def test_quiet_says_nothing_at_all_when_it_passed_and_everything_when_not(tmp_path):
    sock = listening()
    state = tmp_path / "state"
    state.mkdir()
    (state / "history.jsonl").write_text('{"command": "hea')  # a problem worth a line, were it not a pass
    try:
        done = smoke_run("health", "--tcp", "127.0.0.1:%d" % sock.getsockname()[1], "--quiet", "--state-dir", state,
                         "--output", tmp_path / "r.json")
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        assert "cut short" in json.loads((tmp_path / "r.json").read_text())["problems"][0]
    finally:
        sock.close()
    done = smoke_run("health", "--tcp", "127.0.0.1:1", "--quiet", "--state-dir", state)
    assert done.returncode == 1 and json.loads(done.stdout)["status"] == "fail"


def test_a_run_under_python_i_finds_its_own_package_after_the_standard_library(tmp_path):
    """python3 -I (and -P) leave the script's directory off sys.path: smoke.py adds it last, so
    checks/ is found and a module planted beside smoke.py never stands in for Python's own."""
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(str(ROOT / "checks"), str(copy / "checks"), ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(str(ROOT / "smoke.py"), str(copy / "smoke.py"))
    (copy / "argparse.py").write_text("raise SystemExit('planted argparse ran')\n")
    for flags in (["-I"], ["-P"] if sys.version_info >= (3, 11) else ["-I", "-S"]):
        done = subprocess.run([sys.executable] + flags + [str(copy / "smoke.py"), "--version"], capture_output=True,
                              text=True, timeout=60, cwd=str(tmp_path))
        assert done.returncode == 0 and done.stdout.startswith("smoke.py "), (flags, done.stderr)
