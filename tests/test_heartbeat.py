"""heartbeat in spawn mode against fixtures/cluster.py: real processes, real SIGKILL, real event logs."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT

SMOKE, CLUSTER = str(ROOT / "smoke.py"), str(ROOT / "fixtures" / "cluster.py")


def section(tmp_path, coordinator_flags=(), worker_command=None, **extra):
    worker = worker_command or [sys.executable, CLUSTER, "worker", "--coordinator", "127.0.0.1:{port}",
                                "--name", "{worker}", "--id", "{worker_id}", "--interval", "0.2"]
    table = {"run_dir": str(tmp_path / "run-{run_id}"),
             "coordinator": {"command": [sys.executable, CLUSTER, "coordinator", "--port", "{port}", "--events",
                                         "{run_dir}/events.ndjson", "--interval", "0.2", "--timeout", "0.6"]
                             + list(coordinator_flags), "ready_line": "listening"},
             "workers": {"count": 3, "command": worker},
             "events": {"log": "{run_dir}/events.ndjson", "worker_field": "worker_id"},
             "min_beats": 3, "stable_timeout": 5, "deadline": 2, "grace": 1}
    table.update(extra)
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"heartbeat": table}))
    return str(path)


def heartbeat(path, *args):
    done = subprocess.run([sys.executable, SMOKE, "heartbeat", "--config", path] + list(args), capture_output=True,
                          text=True, timeout=60)
    report = json.loads(done.stdout) if done.stdout.startswith("{") else None
    return done, report, {r["name"]: r for r in (report or {}).get("results", [])}


def ours(tmp_path):
    """Processes of this test's run still alive: the coordinator's command line names the
    run_dir, each worker's its id (written to run_dir/logs/NAME.id)."""
    marks = [str(tmp_path).encode()] + [p.read_bytes().strip() for p in tmp_path.glob("run-*/logs/*.id")]
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as fh:
                    cmdline = fh.read()
                with open("/proc/%s/stat" % entry, "rb") as fh:
                    zombie = fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
            except OSError:
                continue
            if not zombie and any(mark in cmdline for mark in marks):
                found.append(int(entry))
    return found


def test_a_killed_worker_is_detected_in_time_and_nothing_is_left(tmp_path):
    done, report, results = heartbeat(section(tmp_path, heartbeat_interval=0.2, failure_timeout=0.6))
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]
    metrics = report["metrics"]["heartbeat"]
    assert 0.4 < metrics["detection_s"] < 1.5 and abs(metrics["event_detection_s"] - metrics["detection_s"]) < 0.1
    assert set(metrics["beat_interval_s"]) == {"w1", "w2", "w3"} and os.path.isdir(metrics["run_dir"])
    assert metrics["expected_bound_s"] == 0.6
    assert (open(os.path.join(metrics["run_dir"], "logs", "w1.id")).read().strip()
            in open(os.path.join(metrics["run_dir"], "events.ndjson")).read())
    assert ours(tmp_path) == []


@pytest.mark.parametrize("flags, steps, words", [
    (["--never-detect"], ["detect"], "no failure event for w1 within the deadline of 2s"),
    # the lie comes 1.2 s after start: before or after w1's own failure is seen
    (["--false-positive", "w2"], ["detect", "grace"], "false positive: w2 reported failed")])
def test_a_detector_that_misses_or_lies_fails_the_run(tmp_path, flags, steps, words):
    done, _, results = heartbeat(section(tmp_path, flags))
    failed = [r for r in results.values() if r["status"] == "fail"]
    assert done.returncode == 1 and len(failed) == 1 and failed[0]["name"] in steps, failed
    assert words in failed[0]["message"]
    assert results["stop"]["status"] == "pass" and ours(tmp_path) == []


def test_a_worker_that_never_beats_is_named(tmp_path):
    worker = ["sh", "-c", 'exec "$0" %s worker --coordinator 127.0.0.1:{port} --name {worker} --id {worker_id} '
              '--interval 0.2 $([ {worker} = w2 ] && echo --never-beat)' % CLUSTER, sys.executable]
    done, _, results = heartbeat(section(tmp_path, worker_command=worker, stable_timeout=1.5))
    assert done.returncode == 1 and "no steady heartbeats within 1.5s from w2 (w2: 0)" in results["workers"]["message"]
    assert results["kill"]["status"] == "skip" and ours(tmp_path) == []


def test_a_signal_mid_run_leaves_no_process(tmp_path):
    proc = subprocess.Popen([sys.executable, SMOKE, "heartbeat", "--config", section(tmp_path, grace=20)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert proc.returncode == 143 and results["detect"]["status"] == "pass" and results["stop"]["status"] == "pass"
    assert results["grace"]["status"] == "skip" and results["grace"]["message"] == "interrupted"
    deadline = time.monotonic() + 5
    while ours(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ours(tmp_path) == []


def test_a_coordinator_that_exits_at_once_says_so(tmp_path):
    path = section(tmp_path)
    doc = json.loads(open(path).read())
    doc["heartbeat"]["coordinator"]["command"] = [sys.executable, "-c", "import sys; print('bad flag'); sys.exit(4)"]
    open(path, "w").write(json.dumps(doc))
    done, _, results = heartbeat(path)
    message = results["coordinator"]["message"]
    assert done.returncode == 1 and message.startswith("exited with code 4; its log ends: bad flag"), message


def test_bad_configs_are_exit_2_and_nothing_is_spawned(tmp_path):
    for extra, words in (({"kill": "w9"}, "'w9' is no worker's name"), ({"signal": "SIGNOPE"}, "is not a signal"),
                         ({"events": {"log": "x", "failure_pattern": "down (\\S+)"}}, "needs a group"),
                         ({"failure_timeout": 1, "self_fence_timeout": 1}, "must be below failure_timeout"),
                         ({"heartbeat_interval": 0.5, "clock_skew": 1}, "must be below 2 x heartbeat_interval"),
                         ({"failure_timeout": 1.5, "clock_skew": 0.6}, "must be at least failure_timeout")):
        done, _, _ = heartbeat(section(tmp_path, **extra), "--validate")
        assert done.returncode == 2 and words in done.stderr, done.stderr
    assert not list(tmp_path.glob("run-*"))


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_sigint_and_sighup_mid_run_leave_no_process(tmp_path, signum, code):
    proc = subprocess.Popen([sys.executable, SMOKE, "heartbeat", "--config", section(tmp_path, grace=20)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # while the workers are getting steady
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=30)
    results = {r["name"]: r for r in json.loads(out)["results"]}
    assert proc.returncode == code and results["stop"]["status"] == "pass"
    deadline = time.monotonic() + 5
    while ours(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ours(tmp_path) == []


def test_a_failed_preflight_spawns_nothing_and_names_what_is_missing(tmp_path):
    preflight = [{"name": "python", "command": [sys.executable, "--version"], "expect": ["version >= 3.8"]},
                 {"name": "cargo", "command": ["no-such-cargo-xyz", "--version"]},
                 {"name": "port", "kind": "tcp", "address": "127.0.0.1:9", "expect": ["connected == false"]}]
    done, _, results = heartbeat(section(tmp_path, preflight=preflight))
    assert done.returncode == 1, done.stderr
    assert results["preflight.python"]["status"] == "pass"
    assert results["preflight.cargo"]["status"] == "fail" and "no-such-cargo-xyz" in results["preflight.cargo"][
        "message"]
    assert results["preflight.port"]["status"] == "skip"
    assert results["coordinator"]["status"] == "skip" and results["stop"]["status"] == "skip"
    assert not list(tmp_path.glob("run-*/logs")) and ours(tmp_path) == []


def test_build_runs_first_with_its_own_timeout(tmp_path):
    slow = [{"name": "compile", "command": ["sleep", "5"], "timeout": 0.5}]
    done, _, results = heartbeat(section(tmp_path, build=slow))
    assert done.returncode == 1 and results["build.compile"]["status"] == "fail"
    assert "timed out" in results["build.compile"]["message"] and results["coordinator"]["status"] == "skip"
    made = [{"name": "make", "command": ["sh", "-c", "echo built > {run_dir}.built"]}]
    done, report, results = heartbeat(section(tmp_path, build=made))
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]
    assert [r["name"] for r in report["results"]][:2] == ["build.make", "coordinator"]
    assert list(tmp_path.glob("run-*.built"))


def test_each_process_gets_its_own_port_directory_and_config(tmp_path):
    template = tmp_path / "worker.conf"
    template.write_text("name = {name}\nport = {my_port}\ndir = {dir}\nid = {worker_id}\ncoordinator = {port}\n")
    web = {"name": "web", "command": [sys.executable, "-m", "http.server", "{my_port}", "--bind", "127.0.0.1"],
           "ready_port": "{my_port}", "ready_timeout": 10}
    coordinator = json.loads(open(section(tmp_path)).read())["heartbeat"]["coordinator"]
    path = section(tmp_path, coordinator=[dict(coordinator, name="coordinator"), web])
    doc = json.loads(open(path).read())
    doc["heartbeat"]["workers"]["templates"] = [{"from": str(template), "to": "{dir}/worker.conf"}]
    open(path, "w").write(json.dumps(doc))
    done, report, results = heartbeat(path)
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]
    run_dir = report["metrics"]["heartbeat"]["run_dir"]
    configs = {name: open(os.path.join(run_dir, "data", name, "worker.conf")).read() for name in ("w1", "w2", "w3")}
    ports = {line.split(" = ")[1] for text in configs.values() for line in text.splitlines() if line.startswith("port")}
    assert len(ports) == 3 and "name = w2" in configs["w2"] and os.path.join(run_dir, "data", "w2") in configs["w2"]
    worker_id = open(os.path.join(run_dir, "logs", "w3.id")).read().strip()
    assert "id = %s" % worker_id in configs["w3"]
    assert len({text.splitlines()[-1] for text in configs.values()}) == 1  # the one coordinator port
    assert ours(tmp_path) == []


def test_plain_text_events_are_read_with_patterns(tmp_path):
    events = {"log": "{run_dir}/events.log", "heartbeat_pattern": r"heartbeat from worker (?P<worker>\S+)",
              "failure_pattern": r"worker (?P<worker>\S+) failed"}
    path = section(tmp_path, ["--text"], events=events)
    doc = json.loads(open(path).read())
    doc["heartbeat"]["coordinator"]["command"][6] = "{run_dir}/events.log"
    open(path, "w").write(json.dumps(doc))
    done, report, results = heartbeat(path)
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]
    metrics = report["metrics"]["heartbeat"]
    assert 0.4 < metrics["detection_s"] < 1.5 and abs(metrics["event_detection_s"] - metrics["detection_s"]) < 0.1


def test_bad_worker_counts_templates_and_placeholders_are_exit_2(tmp_path):
    for extra, words in (({"workers": {"count": 0, "command": ["true"]}}, "workers.count"),
                         ({"workers": {"command": ["run", "{nope}"]}}, "{nope} is not a placeholder here"),
                         ({"workers": {"command": ["true"], "templates": [{"from": str(tmp_path / "missing"),
                                                                           "to": "{dir}/x"}]}}, "cannot read"),
                         ({"workers": {"command": ["true"], "names": ["a/b", "c"]}}, "a process name is"),
                         ({"workers": {"command": ["true"], "ready_port": "{name}"}}, "is not a TCP port")):
        done, _, _ = heartbeat(section(tmp_path, **extra), "--validate")
        assert done.returncode == 2 and words in done.stderr, (extra, done.stderr)
    assert not list(tmp_path.glob("run-*"))


def test_a_process_that_escapes_its_group_is_named_and_killed(tmp_path):
    # w2 leaves a daemon behind in a session of its own: stop must find it, kill it and say so
    worker = ["sh", "-c", '[ {worker} = w2 ] && setsid sh -c "sleep 300; echo {run_dir}" >/dev/null 2>&1 & '
              'exec "$0" %s worker --coordinator 127.0.0.1:{port} --name {worker} --id {worker_id} '
              '--interval 0.2' % CLUSTER, sys.executable]
    done, _, results = heartbeat(section(tmp_path, worker_command=worker))
    assert done.returncode == 1 and results["stop"]["status"] == "fail", results["stop"]
    assert "left running after their group was stopped" in results["stop"]["message"]
    assert "sleep 300" in results["stop"]["message"] and ours(tmp_path) == []


def test_an_earlier_runs_events_in_a_reused_run_dir_do_not_count(tmp_path):
    fixed = {"run_dir": str(tmp_path / "run-fixed")}
    done, _, _ = heartbeat(section(tmp_path, **fixed))
    assert done.returncode == 0
    done, _, results = heartbeat(section(tmp_path, ["--never-detect"], **fixed))
    assert done.returncode == 1 and "no failure event for w1" in results["detect"]["message"], results["detect"]


def test_a_false_positive_before_the_kill_fails_the_workers_step(tmp_path):
    # the lie comes 1.2 s after start, while 10 beats at 0.2 s are still being counted
    done, _, results = heartbeat(section(tmp_path, ["--false-positive", "w2"], min_beats=10))
    assert done.returncode == 1 and results["kill"]["status"] == "skip"
    assert "false positive: w2 reported failed before anything was killed" in results["workers"]["message"]


def test_a_worker_behind_a_wrapper_is_killed_with_its_whole_group(tmp_path):
    worker = ["sh", "-c", '"$@"; echo the worker ended', "sh", sys.executable, CLUSTER, "worker", "--coordinator",
              "127.0.0.1:{port}", "--name", "{worker}", "--id", "{worker_id}", "--interval", "0.2"]
    done, _, results = heartbeat(section(tmp_path, worker_command=worker))
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]


def test_an_events_log_that_cannot_be_read_is_an_error_not_a_dead_cluster(tmp_path):
    done, report, results = heartbeat(section(tmp_path, events={"log": "{run_dir}/logs"}))
    assert done.returncode == 3 and results["workers"]["status"] == "error"
    assert "is not a regular file" in results["workers"]["message"] and ours(tmp_path) == []


def test_a_wrong_field_says_what_the_log_held(tmp_path):
    done, _, results = heartbeat(section(tmp_path, events={"log": "{run_dir}/events.ndjson", "worker_field": "wid"},
                                         stable_timeout=1))
    message = results["workers"]["message"]
    assert done.returncode == 1 and "none an event of the configured kind (the last: {" in message, message


def test_a_signal_while_stopping_keeps_every_result_and_stops_in_one_grace(tmp_path):
    # workers that ignore SIGTERM: stopping waits one shared grace (5 s), not 5 s each
    worker = ["sh", "-c", "trap '' TERM; \"$0\" %s worker --coordinator 127.0.0.1:{port} --name {worker} "
              "--id {worker_id} --interval 0.2; sleep 30" % CLUSTER, sys.executable]
    proc = subprocess.Popen([sys.executable, SMOKE, "heartbeat", "--config", section(tmp_path, worker_command=worker,
                                                                                      grace=0.5)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list(tmp_path.glob("run-*/logs/w1.id")):
        time.sleep(0.05)
    time.sleep(3.5)  # steady, killed, detected, grace over: stopping
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    report = json.loads(out)
    results = {r["name"]: r for r in report["results"]}
    assert proc.returncode == 143 and results["detect"]["status"] == "pass", results
    assert results["stop"]["duration_ms"] < 8000 and "run_dir" in report["metrics"]["heartbeat"]
    assert ours(tmp_path) == []


def test_overrides_on_the_command_line_change_a_configured_run(tmp_path):
    done, report, results = heartbeat(section(tmp_path), "--signal", "SIGTERM", "--grace", "0.5", "--deadline", "3")
    assert done.returncode == 0, done.stderr
    assert results["kill"]["facts"]["signal"] == "SIGTERM" and report["metrics"]["heartbeat"]["deadline_s"] == 3


def test_only_and_min_pass_rate_cannot_cut_the_scenario_short(tmp_path):
    done, _, results = heartbeat(section(tmp_path, ["--never-detect"]), "--only", "detect", "--min-pass-rate", "0.5")
    assert done.returncode == 1 and results["detect"]["status"] == "fail"
    assert all(r["severity"] == "critical" for r in results.values())
    dry = subprocess.run([sys.executable, SMOKE, "heartbeat", "--config", section(tmp_path), "--only", "detect",
                          "--dry-run"], capture_output=True, text=True, timeout=30)
    assert dry.returncode == 0 and "coordinator" in dry.stdout and "stop" in dry.stdout


def test_templates_stay_in_run_dir_and_keep_literal_braces(tmp_path):
    template = tmp_path / "run.sh"
    template.write_text('PORT={my_port}\necho "${HOME}" {{literal}}\n{my_port}\n')
    extra = {"command": ["true"], "templates": [{"from": str(template), "to": "/tmp/outside-{name}.sh"}]}
    done, _, _ = heartbeat(section(tmp_path, workers=extra), "--validate")
    assert done.returncode == 2 and "is outside run_dir" in done.stderr
    path = section(tmp_path)
    doc = json.loads(open(path).read())
    doc["heartbeat"]["workers"]["templates"] = [{"from": str(template), "to": "{dir}/sub/run.sh"}]
    doc["heartbeat"]["workers"]["env"] = {"MY_PORT": "{my_port}"}
    open(path, "w").write(json.dumps(doc))
    done, report, _ = heartbeat(path)
    assert done.returncode == 0, done.stdout[-500:]
    text = open(os.path.join(report["metrics"]["heartbeat"]["run_dir"], "data", "w1", "sub", "run.sh")).read()
    assert '"${HOME}" {literal}' in text and text.startswith("PORT=") and text.splitlines()[2].isdigit()
    if os.geteuid() == 0:  # a template another user could have written configures what runs as us: not read
        os.chown(str(template), 65534, 65534)
        done, _, _ = heartbeat(path, "--validate")
        assert done.returncode == 2 and "not read: it belongs to user 65534" in done.stderr, done.stderr


def test_more_bad_configs_are_exit_2(tmp_path):
    fifo = tmp_path / "events.fifo"
    os.mkfifo(str(fifo))
    for extra, words in (({"signal": "32"}, "is not a signal to send"), ({"signal": "0"}, "is not a signal to send"),
                         ({"run_dir": "/dev/null/{run_id}"}, "is no place for a run's files"),
                         ({"run_dir": "/"}, "is no place"),
                         ({"run_dir": str(fifo) + "/{run_id}"}, "cannot create"),
                         ({"run_dir": str(tmp_path / "{nope}")}, "{nope} is not a placeholder here"),
                         ({"events": {"logs": []}}, "give at least one log"),
                         ({"events": {"logs": ["{run_dir}/logs/ghost.log"]}}, "is the log of no process"),
                         ({"expect_worker": "w1"}, "expect_worker is for attach mode"),
                         ({"events": {"log": "x", "failure_pattern": "(?P<worker>w)", "worker_field": "w"}},
                          "worker_field is for NDJSON events"),
                         ({"workers": {"names": []}}, "give 1 to 256 names"),
                         ({"worker": {"count": 2}}, "(is 'worker' a typo of it?)")):
        table = json.loads(open(section(tmp_path)).read())["heartbeat"]
        if "worker" in extra:
            table.pop("workers")
        table.update(extra)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({"heartbeat": table}))
        done, _, _ = heartbeat(str(path), "--validate")
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, (extra, done.stderr)
    assert not list(tmp_path.glob("run-*"))


def test_the_systems_timings_are_placeholders_too(tmp_path):
    path = section(tmp_path, failure_timeout=0.6, heartbeat_interval=0.2)
    doc = json.loads(open(path).read())
    doc["heartbeat"]["coordinator"]["command"][-4:] = ["--interval", "{heartbeat_interval}", "--timeout",
                                                       "{failure_timeout}"]
    open(path, "w").write(json.dumps(doc))
    done = subprocess.run([sys.executable, SMOKE, "heartbeat", "--config", path, "--dry-run"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and "--interval 0.2 --timeout 0.6" in done.stdout, done.stdout


def test_a_lie_while_the_workers_start_fails_them_even_when_beats_are_not_counted(tmp_path):
    worker = ["sh", "-c", 'sleep 1.5; exec "$0" %s worker --coordinator 127.0.0.1:{port} --name {worker} '
              '--id {worker_id} --interval 0.2' % CLUSTER, sys.executable]
    # w1 is reported failed as soon as it beats, while w2 is still starting; w2 is the one to kill
    path = section(tmp_path, ["--false-positive", "w1"], worker_command=worker, min_beats=0, kill="w2")
    doc = json.loads(open(path).read())
    doc["heartbeat"]["workers"].update(ready_line="beating", count=2)
    open(path, "w").write(json.dumps(doc))
    done, _, results = heartbeat(path)
    assert done.returncode == 1 and "before anything was killed" in results["workers"]["message"], results


def test_a_worker_under_a_job_control_shell_is_killed_with_its_whole_session(tmp_path):
    worker = ["bash", "-c", 'set -m; "$@" & wait', "bash", sys.executable, CLUSTER, "worker", "--coordinator",
              "127.0.0.1:{port}", "--name", "{worker}", "--id", "{worker_id}", "--interval", "0.2"]
    done, _, results = heartbeat(section(tmp_path, worker_command=worker))
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]
    assert ours(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a run_dir of another user (nobody) is made with chown")
def test_a_run_dir_another_user_owns_or_can_write_is_refused(tmp_path):
    from conftest import NOBODY, planted_link
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(str(theirs), NOBODY, NOBODY)
    (theirs / "logs").mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    planted_link(theirs / "logs" / "w1.id", victim)  # a reused run_dir with a link of theirs in it
    done, _, _ = heartbeat(section(tmp_path, run_dir=str(theirs)))
    assert done.returncode == 2 and "belongs to user 65534" in done.stderr
    writable = tmp_path / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    done, _, _ = heartbeat(section(tmp_path, run_dir=str(writable)))
    assert done.returncode == 2 and "can be written by other users" in done.stderr
    assert victim.read_text() == "precious"
    (theirs / "ours").mkdir(0o700)  # ours alone, but in their directory: they could swap it for theirs meanwhile
    for run_dir in (theirs / "ours", theirs / "new"):
        done, _, _ = heartbeat(section(tmp_path, run_dir=str(run_dir)))
        assert done.returncode == 2 and "%s belongs to user 65534, who may change it" % theirs in done.stderr


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_system_listens_on_the_port_its_config_gives_and_the_rest_come_from_a_range(tmp_path):
    fixed, low = _free_port(), _free_port()
    while not 1024 < low < 65000 or abs(low - fixed) < 20:
        low = _free_port()
    path = section(tmp_path, ports="%d-%d" % (low, low + 19), failure_timeout=0.1, scan_interval=0.1)
    doc = json.loads(open(path).read())
    doc["heartbeat"]["coordinator"]["port"] = str(fixed)  # as "${PORT}" gives it
    doc["heartbeat"]["workers"]["templates"] = [{"from": str(tmp_path / "port.conf"), "to": "{dir}/port.conf"}]
    (tmp_path / "port.conf").write_text("{my_port}\n")
    open(path, "w").write(json.dumps(doc))
    planned = subprocess.run([sys.executable, SMOKE, "heartbeat", "--config", path, "--dry-run"],
                             capture_output=True, text=True, timeout=30)
    assert planned.returncode == 0 and "--port %d " % fixed in planned.stdout, planned.stdout
    done, report, results = heartbeat(path)
    assert done.returncode == 0, [(r["name"], r["message"]) for r in results.values()]
    run_dir = report["metrics"]["heartbeat"]["run_dir"]
    ports = {int(open(os.path.join(run_dir, "data", name, "port.conf")).read()) for name in ("w1", "w2", "w3")}
    assert len(ports) == 3 and all(low <= port <= low + 19 for port in ports), ports
    assert "listening on 127.0.0.1:%d" % fixed in open(os.path.join(run_dir, "logs", "coordinator.log")).read()
    # failure_timeout + scan_interval is 0.2 s; the fixture's detector takes 0.6 s: within the deadline, said
    assert report["metrics"]["heartbeat"]["expected_bound_s"] == 0.2
    assert "over the 0.2s its timings promise (failure_timeout + clock_skew + scan_interval)" in \
        results["detect"]["message"] and results["detect"]["status"] == "pass", results["detect"]
    assert ours(tmp_path) == []


def test_a_port_already_taken_is_an_error_and_nothing_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = section(tmp_path)
        doc = json.loads(open(path).read())
        doc["heartbeat"]["workers"]["port"] = [_free_port(), port, _free_port()]
        open(path, "w").write(json.dumps(doc))
        done, _, results = heartbeat(path)
    assert done.returncode == 3, done.stdout
    message = results["coordinator"]["message"]
    assert results["coordinator"]["status"] == "error" and "w2: port %d is in use" % port in message
    assert not list(tmp_path.glob("run-*/logs/*.log")) and ours(tmp_path) == []


def test_bad_ports_and_timings_are_exit_2(tmp_path):
    free = _free_port()
    for extra, words in (({"ports": "9000-8000"}, "is not a port range"), ({"ports": "80"}, "is not a port range"),
                         ({"ports": "%d-%d" % (free, free)}, "too few free ports in %d-%d: 4 needed" % (free, free)),
                         ({"workers": {"count": 3, "command": ["true"], "port": 7000}}, "3 workers cannot share"),
                         ({"workers": {"count": 3, "command": ["true"], "port": [7000]}}, "give 3 ports"),
                         ({"workers": {"count": 2, "command": ["true"], "port": [7000, 7000]}}, "port 7000 is given "
                                                                                                "to two processes"),
                         ({"workers": {"count": 1, "command": ["true"], "port": 70000}}, "70000 is not a TCP port"),
                         ({"failure_timeout": 1, "scan_interval": 1.5, "deadline": 2},
                          "at least failure_timeout + clock_skew + scan_interval (2.5s)")):
        done, _, _ = heartbeat(section(tmp_path, **extra), "--validate")
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, (extra, done.stderr)
    assert not list(tmp_path.glob("run-*"))


def test_a_range_of_ports_others_hold_costs_no_descriptor_per_taken_port(tmp_path):
    """Another user's listeners on most of a `ports` range: each taken port's socket is closed at
    once, so under ulimit -n 64 the run says the range is short, not 'Too many open files'."""
    import resource
    held = []
    for base in range(41000, 60000, 997):
        try:
            for port in range(base, base + 100):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
                sock.listen()
            break
        except OSError:
            for sock in held:
                sock.close()
            held = []
    else:
        pytest.skip("no 100 free ports in a row here")
    try:
        path = section(tmp_path, ports="%d-%d" % (base, base + 101))  # two free: four processes need four
        done = subprocess.run([sys.executable, SMOKE, "heartbeat", "--config", path, "--validate"],
                              capture_output=True, text=True, timeout=60,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
    finally:
        for sock in held:
            sock.close()
    assert done.returncode == 2 and "too few free ports in %d-%d: 4 needed" % (base, base + 101) in done.stderr, \
        done.stderr
