"""rollback against real things: a git repository in a temp dir with a good and a bad commit,
the fixture service reading its release from it, real locks, real signals, and nginx."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import NOBODY, ROOT, as_root, running, shared_dir, wait_for_port
from fixtures.service import serve_in_thread

SMOKE = str(ROOT / "smoke.py")
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
pytestmark = pytest.mark.skipif(not shutil.which("git"), reason="git is not installed")


def smoke(*args, cwd=None, stdin=None, timeout=120):
    done = subprocess.run([sys.executable, SMOKE] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, input=stdin)
    report = json.loads(done.stdout) if done.stdout.startswith("{") else None
    return done, report, {r["name"]: r for r in (report or {}).get("results", [])}


def commit(repo, text, message):
    (repo / "release.txt").write_text(text)
    subprocess.run(GIT + ["-C", str(repo), "add", "release.txt"], check=True)
    subprocess.run(GIT + ["-C", str(repo), "commit", "-q", "-m", message], check=True)


def log(repo):
    done = subprocess.run(["git", "-C", str(repo), "log", "--format=%s"], capture_output=True, text=True, check=True)
    return done.stdout.split("\n")[:-1]


@pytest.fixture
def site(tmp_path):
    """A git checkout whose last commit is a bad release, and a fixture service reading it."""
    repo = tmp_path / "site"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    commit(repo, "release v1\n", "v1")
    commit(repo, "release v2: bad\n", "v2")
    server, url = serve_in_thread(release_file=str(repo / "release.txt"))
    yield repo, url
    server.shutdown()
    server.server_close()


def config(tmp_path, url, repo, steps=None, triggers=("check.release.status == fail",), **rollback):
    section = {"triggers": list(triggers), "run": ["health"],
               "steps": steps if steps is not None else [
                   {"name": "revert", "kind": "command", "command": GIT + ["-C", str(repo), "revert", "--no-edit",
                                                                          "HEAD"]}],
               "verify": ["health"], "verify_timeout": 3, "verify_interval": 0.2,
               "incident_log": str(tmp_path / "incidents.jsonl"), "rollback_log": str(tmp_path / "rollback.log")}
    section.update(rollback)
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({
        "state_dir": str(tmp_path / "state"),
        "health": {"checks": [{"name": "release", "kind": "http", "url": url + "/release",
                               "expect": ["status == 200"]}]},
        "rollback": section}))
    return path


def incidents(tmp_path, started=False):
    """The incident records; an executed rollback also writes a line before it acts (outcome started)."""
    lines = [json.loads(line) for line in (tmp_path / "incidents.jsonl").read_text().splitlines()]
    return [line for line in lines if started or line["outcome"] != "started"]


def test_triggers_fire_the_steps_revert_verify_passes_and_the_incident_is_written(site, tmp_path):
    repo, url = site
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo), "--execute")
    assert done.returncode == 0, done.stdout + done.stderr
    assert log(repo)[0] == 'Revert "v2"' and (repo / "release.txt").read_text() == "release v1\n"
    assert results["triggers"]["status"] == "warn" and "check.release.status is fail" in results["triggers"]["message"]
    assert results["revert"]["status"] == "pass" and results["verify"]["status"] == "pass"
    first, record = incidents(tmp_path, started=True)
    assert first["outcome"] == "started" and first["run_id"] == record["run_id"]  # written before the steps ran
    assert record["executed"] is True and record["dry_run"] is False and record["outcome"] == "rolled back and verified"
    assert record["triggers"][0]["observed"] == "fail" and record["triggers"][0]["threshold"] == "fail"
    assert record["steps"][0]["exit_code"] == 0 and "Revert" in record["steps"][0]["output"]
    assert record["verify"]["status"] == "pass" and record["host"] == socket.gethostname()
    assert record["duration_s"] < record["time_budget_s"] == 900
    line = (tmp_path / "rollback.log").read_text()
    assert line.startswith("ROLLBACK: 20") and "Reason: check.release.status is fail" in line
    history = (tmp_path / "state" / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["command"] for h in history] == ["health", "rollback"]  # the run judged, then rollback


def test_a_dry_run_changes_nothing_says_the_plan_and_exits_1(site, tmp_path):
    repo, url = site
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo), "--format", "text")
    assert done.returncode == 1
    assert "rollback needed: check.release.status is fail; dry run: --execute would run revert, then verify health" \
        in done.stdout
    assert log(repo) == ["v2", "v1"]
    [record] = incidents(tmp_path)
    assert record["dry_run"] is True and record["executed"] is False and record["steps"] == []
    assert (tmp_path / "rollback.log").read_text().startswith("ROLLBACK (dry run): ")
    assert not os.path.exists(tmp_path / "state" / "rollback.lock")  # a dry run takes no lock


def test_nothing_to_do_is_exit_0_and_writes_no_incident(site, tmp_path):
    repo, url = site
    commit(repo, "release v3\n", "v3")
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo), "--execute")
    assert done.returncode == 0 and "no trigger fired: check.release.status pass" in results["triggers"]["message"]
    assert not (tmp_path / "incidents.jsonl").exists() and log(repo)[0] == "v3"


def test_a_failing_step_stops_the_sequence_and_is_recorded(site, tmp_path):
    repo, url = site
    steps = [{"name": "flag", "kind": "command", "command": ["sh", "-c", "echo no flag service >&2; exit 4"]},
             {"name": "revert", "kind": "command", "command": GIT + ["-C", str(repo), "revert", "--no-edit", "HEAD"]}]
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo, steps), "--execute")
    assert done.returncode == 1
    assert results["flag"]["status"] == "fail" and results["revert"]["status"] == "skip"
    assert results["verify"]["status"] == "fail" and log(repo)[0] == "v2"  # not rolled back, so not verified
    [record] = incidents(tmp_path)
    assert record["outcome"] == "step flag failed"
    assert record["steps"][0]["exit_code"] == 4 and "no flag service" in record["steps"][0]["output"]
    assert record["steps"][1]["status"] == "skip"


def test_continue_on_error_lets_the_next_steps_run(site, tmp_path):
    repo, url = site
    steps = [{"name": "page", "kind": "command", "command": ["false"], "continue_on_error": True},
             {"name": "revert", "kind": "command", "command": GIT + ["-C", str(repo), "revert", "--no-edit", "HEAD"]}]
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo, steps), "--execute")
    assert done.returncode == 1, done.stdout  # rolled back and verified, and the page that failed said so
    assert results["page"]["status"] == "fail" and "continue_on_error" in results["page"]["message"]
    assert results["verify"]["status"] == "pass" and results["revert"]["status"] == "pass"
    steps[0]["severity"] = "warning"  # a failure that is only a warning says so
    commit(repo, "release v3: bad\n", "v3")
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo, steps), "--execute",
                                  "--force")
    assert done.returncode == 0 and results["page"]["status"] == "warn", done.stdout


def test_verification_that_keeps_failing_fails_the_rollback(site, tmp_path):
    repo, url = site
    steps = [{"name": "noop", "kind": "command", "command": ["true"]}]
    started = time.monotonic()
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo, steps, verify_timeout=1),
                                  "--execute")
    assert done.returncode == 1 and time.monotonic() - started < 20
    assert results["verify"]["status"] == "fail" and results["verify"]["attempts"] >= 2
    assert "release: status: expected == 200, got 503" in results["verify"]["message"]
    assert incidents(tmp_path)[0]["outcome"] == "rolled back, verification failed"


def test_exceeding_the_time_budget_is_a_failure_and_said(site, tmp_path):
    repo, url = site
    steps = [{"name": "slow", "kind": "command", "command": ["sleep", "5"], "timeout": 30}]
    started = time.monotonic()
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo, steps, time_budget=1),
                                  "--execute")
    assert done.returncode == 1 and time.monotonic() - started < 10  # the budget bounds the steps too
    assert results["time_budget"]["status"] == "fail" and "over its time_budget of 1.0s" in \
        results["time_budget"]["message"]
    assert incidents(tmp_path)[0]["over_budget"] is True


def test_the_cooldown_blocks_a_second_rollback_unless_forced(site, tmp_path):
    repo, url = site
    path = config(tmp_path, url, repo)
    assert smoke("rollback", "--config", path, "--execute")[0].returncode == 0
    commit(repo, "release v3: bad\n", "v3")
    done, report, results = smoke("rollback", "--config", path, "--execute")
    assert done.returncode == 1 and log(repo)[0] == "v3"
    assert "within the cooldown of 30m00s" in results["cooldown"]["message"] and "--force" in \
        results["cooldown"]["message"]
    assert incidents(tmp_path)[-1]["outcome"] == "blocked by cooldown"
    done, report, results = smoke("rollback", "--config", path, "--execute", "--force")
    assert done.returncode == 0 and log(repo)[0] == 'Revert "v3"'
    assert incidents(tmp_path)[-1]["forced"] is True


def test_a_second_rollback_at_the_same_time_hits_the_lock(site, tmp_path):
    repo, url = site
    steps = [{"name": "hold", "kind": "command", "command": ["sleep", "3"]}]
    path = config(tmp_path, url, repo, steps)
    first = subprocess.Popen([sys.executable, SMOKE, "rollback", "--config", str(path), "--execute"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        lock = tmp_path / "state" / "rollback.lock"
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
            time.sleep(0.05)
        done, report, results = smoke("rollback", "--config", path, "--execute")
        assert done.returncode == 3
        assert "another rollback is running" in results["lock"]["message"]
        assert "pid %d" % first.pid in results["lock"]["message"]
    finally:
        first.wait(30)


def test_a_lock_left_by_kill_9_does_not_block_the_next_rollback(site, tmp_path):
    repo, url = site
    path = config(tmp_path, url, repo, [{"name": "hold", "kind": "command", "command": ["sleep", "30"]}])
    first = subprocess.Popen([sys.executable, SMOKE, "rollback", "--config", str(path), "--execute"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = tmp_path / "state" / "rollback.lock"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    config(tmp_path, url, repo)
    # --force: had it reached its steps, the record it wrote first (started) would hold the cooldown
    done, report, results = smoke("rollback", "--config", path, "--execute", "--force")
    assert done.returncode == 0 and "lock" not in results, done.stdout


def test_a_signal_during_the_steps_still_records_the_incident(site, tmp_path):
    repo, url = site
    path = config(tmp_path, url, repo, [{"name": "hold", "kind": "command", "command": ["sleep", "30"]}])
    proc = subprocess.Popen([sys.executable, SMOKE, "rollback", "--config", str(path), "--execute"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "state" / "rollback.lock"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 143
    [record] = incidents(tmp_path)
    assert record["outcome"] == "interrupted" and record["executed"] is True
    assert record["steps"][0]["status"] == "error" and "while it ran" in record["steps"][0]["message"]
    assert json.loads(out)["interrupted"] == "SIGTERM"


def test_a_trigger_without_data_does_not_fire_unless_asked(tmp_path):
    report = tmp_path / "health.json"
    done, _, _ = smoke("health", "--url", "http://127.0.0.1:1/", "--output", report, "--state-dir", tmp_path / "s")
    assert done.returncode == 1
    done, _, results = smoke("rollback", "--from", report, "--trigger", "p95_ms > 500", "--trigger", "fail > 5",
                             "--trigger", "check.nosuch.status == fail", "--state-dir", tmp_path / "s")
    assert done.returncode == 0
    assert "p95_ms: no data (the report does not have it)" in results["triggers"]["message"]
    assert "check.nosuch.status: no data: the report has no check 'nosuch'" in results["triggers"]["message"]
    done, _, results = smoke("rollback", "--from", report, "--trigger", "p95_ms > 500", "--state-dir", tmp_path / "s")
    assert done.returncode == 3 and results["triggers"]["message"].startswith("no trigger could be judged: p95_ms")
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"rollback": {"triggers": ["p95_ms > 500"], "on_no_data": "fire"}}))
    done, _, results = smoke("rollback", "--config", path, "--from", report, "--state-dir", tmp_path / "s")
    assert done.returncode == 1 and "p95_ms: no data (the report does not have it) (on_no_data = fire)" in \
        results["triggers"]["message"]


def test_the_report_can_come_from_stdin(tmp_path):
    done, _, _ = smoke("health", "--url", "http://127.0.0.1:1/", "--state-dir", tmp_path / "s")
    done, report, results = smoke("rollback", "--from", "-", "--trigger", "pass_rate < 0.95", "--trigger",
                                  "fail >= 1", "--state-dir", tmp_path / "s", stdin=done.stdout)
    assert done.returncode == 1, done.stderr
    assert "pass_rate 0.0 < 0.95; fail 1 >= 1" in results["triggers"]["message"]
    assert report["metrics"]["rollback"]["report"] == str(tmp_path / "s" / "last-report.json")
    done, _, results = smoke("rollback", "--from", "-", "--trigger", "fail > 0", "--state-dir", tmp_path / "s",
                             stdin=smoke("health", "--tcp", "127.0.0.1:1", "--format", "text", "--state-dir",
                                         tmp_path / "s")[0].stdout)
    assert done.returncode == 3 and "a --format text report? rollback reads the JSON one" in \
        results["report"]["message"]


def test_a_report_that_cannot_be_read_is_exit_3(tmp_path):
    (tmp_path / "garbage.json").write_text("<html>")
    (tmp_path / "other.json").write_text('{"status": "ok"}')
    for source, said in ((tmp_path / "garbage.json", "is not JSON"), (tmp_path / "missing.json", "No such file"),
                         (tmp_path / "other.json", "is not a smoke.py report"), (tmp_path, "is a directory")):
        done, _, results = smoke("rollback", "--from", source, "--trigger", "fail > 0", "--state-dir", tmp_path / "s")
        assert done.returncode == 3 and said in results["report"]["message"], (source, done.stdout)


def test_bad_input_is_exit_2_naming_the_field(tmp_path):
    cases = [
        ({"rollback": {"triggers": ["fail >"]}}, [], "rollback.triggers[0]"),
        ({"rollback": {"triggers": []}}, [], "rollback.triggers: give at least one trigger"),
        ({"rollback": {"triggers": ["fail > 0"], "verify": ["nosuch"], "steps": [{"kind": "command",
                                                                              "command": ["true"]}]}},
         ["--from", "x"], "'nosuch' is not a section it can run"),
        ({"rollback": {"triggers": ["fail > 0"], "run": ["health"]}}, [], "runs the health section, which the config"),
        ({"rollback": {"triggers": ["fail > 0"]}}, ["--from", "x", "--execute"], "--execute: the rollback section has "
                                                                                 "no steps"),
        ({"rollback": {"triggers": ["fail > 0"], "cooldown": -1}}, [], "rollback.cooldown"),
        ({"rollback": {"triggers": ["fail > 0"], "steps": [{"name": "verify", "kind": "command",
                                                            "command": ["true"]}]}}, [], "rollback's own results"),
        ({"rollback": {"triggers": ["fail > 0"], "steps": [{"kind": "command", "command": ["echo", "{nope}"]}]}}, [],
         "{nope} is neither captured"),
        ({"rollback": {"triggers": ["fail > 0"]}}, [], "which report?"),
        ({"rollback": {"triggers": ["fail > 0"]}}, ["--from", "x", "--run", "health"], "not both"),
        ({"rollback": {"triggers": ["fail > 0"]}, "history_limit": 0}, ["--from", "x"], "history_limit"),
    ]
    for doc, flags, said in cases:
        path = tmp_path / "smoke.json"
        path.write_text(json.dumps(doc))
        done, _, _ = smoke("rollback", "--config", path, *flags)
        assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, (doc, done.stderr)
    done, _, _ = smoke("rollback", "--trigger", "fail > 0", "--from", "x", "--execute")
    assert done.returncode == 2 and "no steps to run" in done.stderr


def test_consecutive_failures_come_from_the_history(tmp_path):
    state = tmp_path / "s"
    for _ in range(2):
        smoke("health", "--url", "http://127.0.0.1:1/", "--state-dir", state)
    report = tmp_path / "r.json"
    smoke("health", "--url", "http://127.0.0.1:1/", "--state-dir", state, "--output", report)
    done, out, results = smoke("rollback", "--from", report, "--trigger", "consecutive_failures >= 3", "--trigger",
                               'check["http://127.0.0.1:1/"].consecutive_failures >= 4', "--state-dir", state)
    assert done.returncode == 1, done.stdout
    judged = {t["condition"]: t for t in out["metrics"]["rollback"]["triggers"]}
    assert judged["consecutive_failures >= 3"]["observed"] == 3 and judged["consecutive_failures >= 3"]["fired"]
    assert not judged['check["http://127.0.0.1:1/"].consecutive_failures >= 4']["fired"]


def test_perf_metrics_are_facts_the_worst_target_and_each_by_name(tmp_path):
    report = {"command": "perf", "status": "pass", "summary": {"total": 2, "pass": 2, "pass_rate": 1.0},
              "results": [], "started_at": "2026-01-01T00:00:00.000Z",
              "metrics": {"perf": {"targets": {"a": {"p95_ms": 612, "rps": 900}, "b": {"p95_ms": 80, "rps": 120}}}}}
    path = tmp_path / "perf.json"
    path.write_text(json.dumps(report))
    done, out, results = smoke("rollback", "--from", path, "--trigger", "p95_ms > 500", "--trigger", "rps < 200",
                               "--trigger", "perf.b.p95_ms > 100", "--state-dir", tmp_path / "s")
    assert done.returncode == 1
    assert results["triggers"]["message"].startswith("rollback needed: p95_ms 612 > 500; rps 120 < 200;")
    assert "perf.b.p95_ms" not in results["triggers"]["message"].split("dry run")[0]


def test_reverting_the_captured_bad_commit_twice_never_brings_it_back(site, tmp_path):
    """README's worked example: revert the last commit that is not a revert, found by a step."""
    repo, url = site
    steps = [{"name": "find", "kind": "command", "command": ["git", "-C", str(repo), "log", "-1", "--format=%H",
                                                             "--invert-grep", "--grep=^Revert"],
              "capture": {"bad_commit": {"from": "stdout", "regex": "([0-9a-f]{40})"}}},
             {"name": "revert", "kind": "command", "command": GIT + ["-C", str(repo), "revert", "--no-edit",
                                                                    "{bad_commit}"]}]
    path = config(tmp_path, url, repo, steps, triggers=["pass_rate <= 1"])  # it fires again, whatever health says
    assert smoke("rollback", "--config", path, "--execute")[0].returncode == 0
    assert (repo / "release.txt").read_text() == "release v1\n" and log(repo)[0] == 'Revert "v2"'
    done, report, results = smoke("rollback", "--config", path, "--execute", "--force")
    assert results["find"]["status"] == "pass" and results["revert"]["status"] == "fail", done.stdout
    assert done.returncode == 1 and log(repo)[:2] == ['Revert "v2"', "v2"]  # no revert of the revert (v2 again)
    assert (repo / "release.txt").read_text() == "release v1\n"


def test_mistyped_triggers_and_units_are_exit_2_before_anything_runs(site, tmp_path):
    repo, url = site
    for triggers, said in ((["check.relase.status == fail"], "runs no check 'relase'; did you mean release?"),
                           (["pass_rate < 95%"], "'95%' is not a number"), (["p95 > 15"], "did you mean p95_ms?"),
                           (["p95_ms > 500ms"], "'500ms' is not a number")):
        done, _, _ = smoke("rollback", "--config", config(tmp_path, url, repo, triggers=triggers), "--validate")
        assert done.returncode == 2 and said in done.stderr, (triggers, done.stderr)
    done, _, _ = smoke("rollback", "--config", config(tmp_path, url, repo), "--trigger", "p99 > 3", "--validate")
    assert done.returncode == 2 and "--trigger 'p99 > 3'" in done.stderr and "did you mean p99_ms?" in done.stderr


def test_a_trigger_flag_adds_to_a_config_found_in_the_directory(site, tmp_path):
    repo, url = site
    path = config(tmp_path, url, repo, triggers=["fail > 5"])  # ./smoke.json: found without --config
    assert path.name == "smoke.json"
    done, report, results = smoke("rollback", "--trigger", "pass_rate < 1", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "pass_rate 0.0 < 1" in results["triggers"]["message"] and "would run revert" in \
        results["triggers"]["message"]
    done, report, results = smoke("rollback", "--trigger", "pass_rate < 1", "--execute", cwd=tmp_path)
    assert done.returncode == 0 and log(repo)[0] == 'Revert "v2"'


def test_log_directories_are_made_and_a_time_budget_is_named_as_such(site, tmp_path):
    repo, url = site
    steps = [{"name": "slow", "kind": "command", "command": ["sleep", "5"], "timeout": 30}]
    path = config(tmp_path, url, repo, steps, time_budget=1, incident_log=str(tmp_path / "new" / "dir" / "i.jsonl"),
                  rollback_log=str(tmp_path / "other" / "rollback.log"))
    done, report, results = smoke("rollback", "--config", path, "--execute")
    assert done.returncode == 1 and "deadline exceeded (time_budget" in results["slow"]["message"]
    assert "--deadline" not in results["slow"]["message"]
    assert (tmp_path / "new" / "dir" / "i.jsonl").exists() and (tmp_path / "other" / "rollback.log").exists()


def test_all_runs_the_checks_and_leaves_the_rollback_alone(site, tmp_path):
    repo, url = site
    done, report, results = smoke("all", "--config", config(tmp_path, url, repo))
    assert done.returncode == 1 and set(results) == {"release"} and log(repo)[0] == "v2"


@pytest.mark.skipif(not shutil.which("nginx") and not os.path.exists("/usr/sbin/nginx"),
                    reason="nginx is not installed (apt install nginx)")
def test_a_real_nginx_rolled_back_by_git_revert_and_reload(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    repo = tmp_path / "nginx"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    temp = " ".join("%s_temp_path %s;" % (kind, tmp_path / kind) for kind in ("client_body", "proxy", "fastcgi",
                                                                             "uwsgi", "scgi"))
    conf = ("worker_processes 1; daemon off; pid %s/nginx.pid; error_log %s/error.log;\n"
            "events { worker_connections 64; }\n"
            "http { access_log off; %s server { listen 127.0.0.1:%d; location /health { return %%d 'ok'; } } }\n"
            % (tmp_path, tmp_path, temp, port))
    (repo / "nginx.conf").write_text(conf % 200)
    subprocess.run(GIT + ["-C", str(repo), "add", "nginx.conf"], check=True)
    subprocess.run(GIT + ["-C", str(repo), "commit", "-q", "-m", "good"], check=True)
    (repo / "nginx.conf").write_text(conf % 503)
    subprocess.run(GIT + ["-C", str(repo), "commit", "-q", "-am", "bad: health answers 503"], check=True)
    server = subprocess.Popen([nginx, "-c", str(repo / "nginx.conf"), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    try:
        wait_for_port(port)
        path = tmp_path / "smoke.json"
        path.write_text(json.dumps({
            "health": {"checks": [{"name": "nginx", "kind": "http", "url": "http://127.0.0.1:%d/health" % port,
                                   "expect": ["status == 200"]}]},
            "rollback": {"triggers": ["check.nginx.status == fail"], "verify": ["health"], "settle": 0.2,
                         "verify_timeout": 10, "verify_interval": 0.2, "steps": [  # README's worked example
                             {"name": "find", "kind": "command",
                              "command": ["git", "-C", str(repo), "log", "-1", "--format=%H", "--invert-grep",
                                          "--grep=^Revert"],
                              "capture": {"bad_commit": {"from": "stdout", "regex": "([0-9a-f]{40})"}}},
                             {"name": "revert", "kind": "command",
                              "command": GIT + ["-C", str(repo), "revert", "--no-edit", "{bad_commit}"]},
                             {"name": "reload", "kind": "command",
                              "command": [nginx, "-c", str(repo / "nginx.conf"), "-p", str(tmp_path), "-s",
                                          "reload"]}]}}))
        report = tmp_path / "health.json"
        done, _, _ = smoke("health", "--config", path, "--output", report, "--state-dir", tmp_path / "s")
        assert done.returncode == 1
        done, out, results = smoke("rollback", "--config", path, "--from", report, "--execute", "--state-dir",
                                   tmp_path / "s")
        assert done.returncode == 0, done.stdout + done.stderr
        assert results["reload"]["status"] == "pass" and results["verify"]["status"] == "pass"
        done, _, _ = smoke("health", "--config", path, "--state-dir", tmp_path / "s")
        assert done.returncode == 0
    finally:
        server.terminate()
        server.wait(10)


def test_a_step_that_did_not_run_is_no_rollback(site, tmp_path):
    repo, url = site
    steps = [{"name": "find", "kind": "command", "command": ["echo", "nothing"], "continue_on_error": True,
              "capture": {"commit": {"from": "stdout", "regex": "commit ([0-9a-f]+)"}}},
             {"name": "revert", "kind": "command", "command": GIT + ["-C", str(repo), "revert", "{commit}"]}]
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo, steps), "--execute")
    assert done.returncode == 1 and results["revert"]["status"] == "skip"
    assert results["verify"]["status"] == "fail" and "step revert did not run" in results["verify"]["message"]
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo,
                                                                 [{"name": "x", "kind": "command",
                                                                   "command": ["/nonexistent/bin"]}]),
                                  "--execute", "--force")
    assert done.returncode == 1 and results["x"]["status"] == "error"  # a rollback that failed, not "could not"


def test_selection_flags_are_refused_a_rollback_runs_whole(site, tmp_path):
    repo, url = site
    for flags in (["--only", "triggers"], ["--tag", "x"], ["--skip-tag", "x"]):
        done, _, _ = smoke("rollback", "--config", config(tmp_path, url, repo), "--execute", *flags)
        assert done.returncode == 2 and "a rollback runs whole" in done.stderr
    assert log(repo)[0] == "v2"


def test_no_record_means_no_rollback_even_when_the_disk_fills_up(site, tmp_path):
    repo, url = site
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo, incident_log="/dev/full"),
                                  "--execute")
    assert done.returncode == 3 and "not rolled back: cannot record the incident in /dev/full" in \
        results["incident"]["message"]
    assert "revert" not in results and log(repo)[0] == "v2"


def test_values_filled_into_a_shell_command_are_quoted_and_a_string_command_is_split_first(tmp_path):
    report = {"command": "health", "status": "fail", "summary": {"total": 1, "fail": 1, "pass_rate": 0.0},
              "started_at": "2026-01-01T00:00:00.000Z",
              "results": [{"name": "api", "status": "fail",
                           "message": "x$(touch %s/PWNED1) `touch %s/PWNED2`;touch %s/PWNED3 'q" % ((tmp_path,) * 3)}]}
    (tmp_path / "r.json").write_text(json.dumps(report))
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"rollback": {"triggers": ["check.api.message contains x"], "verify": ["health"],
                                             "steps": [{"name": "say", "kind": "command", "shell": True,
                                                        "command": "echo {reasons} > %s/said" % tmp_path},
                                                       {"name": "quoted", "kind": "command", "shell": True,
                                                        "command": 'echo "{reasons}" > %s/quoted' % tmp_path},
                                                       {"name": "argv", "kind": "command",
                                                        "command": "printf '[%s]' {run_id} {reasons}"}]},
                                "health": {"checks": [{"name": "t", "kind": "command", "command": ["true"]}]}}))
    done, out, results = smoke("rollback", "--config", path, "--from", tmp_path / "r.json", "--execute",
                               "--state-dir", tmp_path / "s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert not list(tmp_path.glob("PWNED*"))
    assert "$(touch" in (tmp_path / "said").read_text()
    assert (tmp_path / "quoted").read_text().strip() == out["metrics"]["rollback"]["reasons"]  # exactly, as text
    doc = json.loads(path.read_text())
    doc["rollback"]["steps"] = [{"name": "q", "kind": "command", "shell": True, "command": "echo '{reasons}'"}]
    path.write_text(json.dumps(doc))
    done, _, _ = smoke("rollback", "--config", path, "--from", tmp_path / "r.json", "--validate")
    assert done.returncode == 2 and "{reasons} is inside single quotes" in done.stderr
    assert results["argv"]["facts"]["stdout"].count("[") == 2  # {reasons} stayed one argument


def test_hostile_files_never_crash_or_hang_a_run(tmp_path):
    state = tmp_path / "s"
    state.mkdir()
    (state / "history.jsonl").write_text("[" * 100000 + "]" * 100000 + "\n")
    done = subprocess.run([sys.executable, SMOKE, "health", "--tcp", "127.0.0.1:1", "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and json.loads(done.stdout)["status"] == "fail", done.stderr
    fifo_dir = tmp_path / "f"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "history.jsonl")
    done = subprocess.run([sys.executable, SMOKE, "health", "--tcp", "127.0.0.1:1", "--state-dir", str(fifo_dir)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "not a regular file" in done.stderr
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    done, _, results = smoke("rollback", "--from", deep, "--trigger", "fail > 0", "--state-dir", state)
    assert done.returncode == 3 and "nested too deep" in results["report"]["message"]
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"command": "health", "status": "fail", "summary": {"total": 1, "fail": 1},
                                  "results": [{"name": "api", "status": "fail", "message": "a" * 30 + "!"}]}))
    done, out, results = smoke("rollback", "--from", report, "--trigger", "check.nope.status !exists", "--trigger",
                               "check.api.message matches (a+)+$", "--state-dir", state)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr  # !exists fired; the regex: error
    judged = {t["condition"]: t for t in out["metrics"]["rollback"]["triggers"]}
    assert "could not be judged" in judged["check.api.message matches (a+)+$"]["reason"]


def test_the_cooldown_ignores_a_record_from_the_future_or_not_a_number(site, tmp_path):
    repo, url = site
    (tmp_path / "incidents.jsonl").write_text(
        json.dumps({"executed": True, "epoch": time.time() + 365 * 86400, "outcome": "x"}) + "\n" +
        '{"executed": true, "epoch": Infinity, "outcome": "x"}\n' + json.dumps({"executed": "no", "epoch": 1}) + "\n")
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo), "--execute")
    assert done.returncode == 0 and "cooldown" not in results, done.stdout


def test_a_report_that_could_not_check_is_not_rolled_back_on(site, tmp_path):
    repo, url = site
    path = tmp_path / "smoke.json"
    config(tmp_path, url, repo, triggers=["pass_rate < 0.95"])
    doc = json.loads(path.read_text())
    doc["health"]["checks"] = [{"name": "probe", "kind": "command", "command": ["/nonexistent/probe"]}]
    path.write_text(json.dumps(doc))
    done, report, results = smoke("rollback", "--config", path, "--execute")
    assert done.returncode == 3 and "not rolling back on it" in results["triggers"]["message"]
    assert log(repo)[0] == "v2"


def test_a_secret_in_a_report_from_stdin_is_masked_in_the_copy_kept(tmp_path):
    report = {"command": "health", "status": "fail", "summary": {"total": 1, "fail": 1},
              "results": [{"name": "api", "status": "fail", "message": "token SuperSecretValue123"}]}
    done = subprocess.run([sys.executable, SMOKE, "rollback", "--from", "-", "--secret", "DEPLOY_TOKEN", "--trigger",
                           "fail > 0", "--state-dir", str(tmp_path / "s")], input=json.dumps(report), text=True,
                          capture_output=True, timeout=60, env=dict(os.environ, DEPLOY_TOKEN="SuperSecretValue123"))
    assert done.returncode == 1, done.stderr
    assert "SuperSecretValue123" not in (tmp_path / "s" / "last-report.json").read_text()
    assert "SuperSecretValue123" not in (tmp_path / "s" / "incidents.jsonl").read_text()


def test_an_empty_verify_is_exit_2(site, tmp_path):
    repo, url = site
    done, _, _ = smoke("rollback", "--config", config(tmp_path, url, repo, verify=[]), "--validate")
    assert done.returncode == 2 and "rollback.verify: give the sections" in done.stderr


def test_an_incident_log_that_is_a_fifo_never_hangs_a_rollback(site, tmp_path):
    repo, url = site
    os.mkfifo(tmp_path / "fifo")
    path = config(tmp_path, url, repo, incident_log=str(tmp_path / "fifo"))
    for flags, code in (([], 1), (["--execute"], 3)):
        started = time.monotonic()
        done, report, results = smoke("rollback", "--config", path, *flags, timeout=30)
        assert done.returncode == code and time.monotonic() - started < 10, done.stdout
        assert results["incident"]["status"] == "error"
    assert log(repo)[0] == "v2"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: links and directories of another user (nobody)")
def test_links_and_directories_of_another_user_never_take_a_rollbacks_records(site, tmp_path):
    from conftest import NOBODY, planted_link, shared_dir
    repo, url = site
    victim = tmp_path / "victim"
    victim.write_text("precious")
    theirs = shared_dir(tmp_path) / "smoke-state"  # they made the state directory first, in /tmp
    theirs.mkdir()
    os.chown(str(theirs), NOBODY, NOBODY)
    report = json.dumps({"command": "health", "status": "fail", "summary": {"total": 1, "fail": 1},
                         "results": [{"name": "api", "status": "fail"}]})
    done, _, results = smoke("rollback", "--from", "-", "--trigger", "fail > 0", "--state-dir", theirs, stdin=report)
    assert done.returncode == 2 and "--state-dir: %s belongs to user 65534" % theirs in done.stderr  # nothing run
    assert os.listdir(str(theirs)) == []
    planted_link(tmp_path / "shared" / "incidents.jsonl", victim)
    path = config(tmp_path, url, repo, incident_log=str(tmp_path / "shared" / "incidents.jsonl"))
    done, _, results = smoke("rollback", "--config", path, "--state-dir", tmp_path / "own", "--execute")
    assert done.returncode == 3 and "a link of user 65534" in results["incident"]["message"]
    assert victim.read_text() == "precious" and log(repo)[0] == "v2"  # never acted without a record


# --- what a step starts is the system's: it outlives the run -----------------------------------

# A daemon as they are written: bind, fork, setsid, fork again, stdio to /dev/null, its pid in a file.
DAEMON = """import os, socket, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen(16)
if os.fork():
    sys.exit(0)
os.setsid()
if os.fork():
    os._exit(0)
with open(sys.argv[2], "w") as fh:
    fh.write(str(os.getpid()))
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(null, fd)
while True:
    sock.accept()[0].close()
"""


def free_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def acting(tmp_path, port, steps):
    """A rollback that fires while nothing answers on port, runs steps and verifies that something does."""
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({
        "health": {"checks": [{"name": "up", "kind": "tcp", "address": "127.0.0.1:%d" % port, "timeout": 1}]},
        "rollback": {"triggers": ["check.up.status == fail"], "run": ["health"], "steps": steps, "verify": ["health"],
                     "verify_timeout": 10, "verify_interval": 0.2, "incident_log": str(tmp_path / "i.jsonl")}}))
    return path


def daemon(name, tmp_path, port):
    """(the argv that starts it on port and returns, its pid file)."""
    pidfile = tmp_path / ("%s.pid" % name)
    if name == "nginx":
        temp = " ".join("%s_temp_path %s;" % (kind, tmp_path / kind) for kind in ("client_body", "proxy", "fastcgi",
                                                                                 "uwsgi", "scgi"))
        (tmp_path / "nginx.conf").write_text(
            "worker_processes 1; pid %s; error_log %s/error.log;\nevents { worker_connections 64; }\n"
            "http { access_log off; %s server { listen 127.0.0.1:%d; location / { return 200 'ok'; } } }\n"
            % (pidfile, tmp_path, temp, port))
        return [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(tmp_path / "nginx.conf"), "-p",
                str(tmp_path)], pidfile
    if name == "redis-server":
        return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes", "--pidfile",
                str(pidfile), "--dir", str(tmp_path), "--save", "", "--appendonly", "no"], pidfile
    return [sys.executable, "-c", DAEMON, str(port), str(pidfile)], pidfile


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as fh:
        return fh.read()


@pytest.mark.parametrize("name", ["double-fork", "nginx", "redis-server"])
def test_a_daemon_a_step_starts_still_answers_after_the_run(tmp_path, name):
    if name != "double-fork" and not shutil.which(name) and not os.path.exists("/usr/sbin/" + name):
        pytest.skip("%s is not installed" % name)
    port = free_port()
    argv, pidfile = daemon(name, tmp_path, port)
    try:
        done, _, results = smoke("rollback", "--config", acting(tmp_path, port, [{"name": "start", "kind": "command",
                                                                                   "command": argv}]),
                                 "--execute", "--state-dir", tmp_path / "s")
        assert done.returncode == 0 and results["verify"]["status"] == "pass", done.stdout + done.stderr
        time.sleep(1)  # smoke.py has ended: its reaper has done what it does
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # still answers
        pid = int(pidfile.read_text())
        assert b"SMOKE_PY_RUN=" not in environ(pid)  # nothing marks it as the run's
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)  # nginx and redis stop their workers with it


def test_a_step_that_hangs_is_still_killed_with_its_group(tmp_path):
    token = "301.%d" % os.getpid()
    done, _, results = smoke("rollback", "--config", acting(tmp_path, free_port(), [
        {"name": "hang", "kind": "command", "command": ["sh", "-c", "sleep %s & sleep %s" % (token, token)],
         "timeout": 1}]), "--execute", "--state-dir", tmp_path / "s")
    assert done.returncode == 1 and "timed out after 1s" in results["hang"]["message"]
    deadline = time.monotonic() + 5
    while running(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running(token) == []


def test_a_spawn_step_is_no_rollback_exit_2(tmp_path):
    path = acting(tmp_path, free_port(), [{"name": "serve", "kind": "spawn", "command": ["sleep", "60"],
                                           "log": str(tmp_path / "serve.log")}])
    done, _, _ = smoke("rollback", "--config", path, "--execute")
    assert done.returncode == 2 and "rollback.steps[0].kind: a spawned process is the run's" in done.stderr


def test_a_key_given_twice_in_a_report_or_an_incident_line_is_exit_2_naming_it(site, tmp_path):
    report = tmp_path / "report.json"
    report.write_text('{"command": "health", "status": "fail", "results": [],'
                      ' "summary": {"total": 2, "pass_rate": 0.0, "pass_rate": 1.0}}')
    for source, stdin in ((report, None), ("-", report.read_text())):
        done, _, _ = smoke("rollback", "--from", source, "--trigger", "pass_rate < 0.95", "--state-dir",
                           tmp_path / "s", stdin=stdin)
        assert done.returncode == 2 and done.stdout == "", done.stdout
        assert done.stderr == "smoke.py: error: --from %s: summary: 'pass_rate' is given twice (the second would " \
                              "silently replace the first)\n" % (report if stdin is None else "stdin")
    repo, url = site
    (tmp_path / "incidents.jsonl").write_text('{"outcome": "rolled back", "executed": false, "executed": true, '
                                              '"epoch": %f}\n' % time.time())
    done, _, _ = smoke("rollback", "--config", config(tmp_path, url, repo), "--execute")
    assert done.returncode == 2 and "incidents.jsonl, line 1: the top level: 'executed' is given twice" in done.stderr
    assert log(repo)[0] == "v2"  # nothing was done on a record that says two things


def test_a_percentile_trigger_never_passes_over_a_target_with_too_few_samples(service, tmp_path):
    """A real perf run: the slow target's 15 requests are too few for a p95, so its max_ms
    stands in (no percentile is above it), the trigger fires on it, and the reason says so."""
    config = tmp_path / "perf.json"
    config.write_text(json.dumps({"perf": {"targets": [
        {"name": "fast", "url": service + "/health", "requests": 200, "connections": 2},
        {"name": "slow", "url": service + "/latency?delay_ms=300", "requests": 15, "connections": 5}]}}))
    done, report, _ = smoke("perf", "--config", config, "--state-dir", tmp_path / "s")
    slow = report["metrics"]["perf"]["targets"]["slow"]
    assert "p95_ms" not in slow and "p95_ms" in slow["insufficient"] and slow["max_ms"] >= 300, slow
    path = tmp_path / "report.json"
    path.write_text(done.stdout)
    done, _, results = smoke("rollback", "--from", path, "--trigger", "p95_ms > 250", "--trigger",
                             "perf.slow.p95_ms > 250", "--trigger", "perf.fast.p95_ms > 250", "--state-dir",
                             tmp_path / "s")
    message = results["triggers"]["message"]
    assert done.returncode == 1, message
    assert "p95_ms %s > 250 (too few samples in slow for p95_ms: its max_ms stands in)" % slow["max_ms"] in message
    assert "perf.slow.p95_ms %s > 250 (too few samples in slow" % slow["max_ms"] in message
    assert "perf.fast.p95_ms" not in message, message  # it did not fire, and is no stand-in


@as_root
def test_a_report_another_user_could_have_written_decides_nothing(site, tmp_path):
    """--from /tmp/report.json of nobody's (or root's, writable by all): a stale pass would keep
    a needed rollback from running, a planted failure would run the steps. Exit 2, nothing run."""
    repo, url = site
    shared = shared_dir(tmp_path)
    planted = {"schema": "smoke.report/1", "command": "health", "status": "fail", "exit_code": 1,
               "summary": {"total": 1, "pass": 0, "fail": 1, "pass_rate": 0.0},
               "results": [{"name": "release", "section": "health", "kind": "http", "status": "fail"}]}
    for owner, mode in ((NOBODY, 0o644), (0, 0o666)):
        report = shared / ("report-%d.json" % owner)
        report.write_text(json.dumps(planted))
        os.chown(str(report), owner, owner)
        report.chmod(mode)
        done, _, _ = smoke("rollback", "--config", config(tmp_path, url, repo), "--from", report, "--execute")
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
        assert "--from: %s: not read: it " % report in done.stderr and "rollback's steps" in done.stderr
        assert log(repo) == ["v2", "v1"] and not (tmp_path / "incidents.jsonl").exists()
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps(planted))
    done, _, results = smoke("rollback", "--config", config(tmp_path, url, repo), "--from", mine)
    assert done.returncode == 1 and results["triggers"]["status"] == "fail", done.stderr  # a dry run: needed


@as_root
def test_an_incident_log_another_user_could_have_written_is_not_read_and_nothing_is_run(site, tmp_path):
    """incidents.jsonl of root's with mode 0666 (in a directory of root's, 0755), or nobody's: nobody could
    append a rollback that "just ran", and its cooldown would hold every rollback back for ever. Judged on
    the file opened: the incident cannot be recorded, a critical error before anything is done (exit 3),
    no step run, nothing appended; once only we could have written it, its cooldown counts."""
    repo, url = site
    path = tmp_path / "incidents.jsonl"
    forged = json.dumps({"epoch": time.time(), "executed": True, "outcome": "rolled back and verified"}) + "\n"
    for owner, mode, said in ((0, 0o666, "can be written by other users (mode 0666)"),
                              (NOBODY, 0o644, "belongs to user 65534")):
        path.write_text(forged)
        os.chown(str(path), owner, owner)
        path.chmod(mode)
        done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo), "--execute")
        assert done.returncode == 3 and "cooldown" not in results, done.stdout
        assert results["incident"]["message"] == "not rolled back: the incident log is not read: %s %s: another user " \
            "could have written in it what never happened (%s)" % (path, said, "chmod go-w it" if owner == 0 else
                                                                    "it is not ours: move it away")
        assert results["incident"]["severity"] == "critical" and results["incident"]["status"] == "error"
        assert log(repo) == ["v2", "v1"] and path.read_text() == forged
    os.chown(str(path), 0, 0)
    path.chmod(0o644)  # ours alone: the rollback it records did run, and holds this one back
    done, report, results = smoke("rollback", "--config", config(tmp_path, url, repo), "--execute")
    assert done.returncode == 1 and "within the cooldown" in results["cooldown"]["message"] and log(repo)[0] == "v2"
