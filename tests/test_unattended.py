"""Running unattended: --lock (contention, a stale lock after kill -9), --jitter, --quiet."""

import json
import signal
import socket
import subprocess
import sys
import time

from conftest import ROOT

SMOKE = str(ROOT / "smoke.py")


def smoke(*args, **kwargs):
    return subprocess.run([sys.executable, SMOKE] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=60, **kwargs)


def listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def wait_for_lock(path, proc):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (path.exists() and path.read_text()):
        assert proc.poll() is None
        time.sleep(0.05)


def test_a_second_run_with_the_same_lock_exits_3_naming_the_holder(service, tmp_path):
    lock = tmp_path / "smoke.lock"
    first = subprocess.Popen([sys.executable, SMOKE, "health", "--url", service + "/fault/hang", "--timeout", "30",
                              "--lock", str(lock), "--state-dir", str(tmp_path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for_lock(lock, first)
        started = time.monotonic()
        done = smoke("health", "--url", service + "/health", "--lock", lock, "--state-dir", tmp_path)
        assert done.returncode == 3 and time.monotonic() - started < 5  # at once: it does not wait
        assert "is held by pid %d since" % first.pid in done.stderr and done.stderr.count("\n") == 1
    finally:
        first.send_signal(signal.SIGKILL)  # a lock left by kill -9 ...
        first.wait(10)
    done = smoke("health", "--url", service + "/health", "--lock", lock, "--state-dir", tmp_path)
    assert done.returncode == 0, done.stderr  # ... never blocks the next run


def test_a_lock_that_cannot_be_made_is_exit_2(tmp_path):
    for path, said in ((tmp_path / "missing" / "x.lock", "No such file or directory"), (tmp_path, "Is a directory"),
                       ("", "give a file name")):
        done = smoke("health", "--tcp", "127.0.0.1:1", "--lock", path, "--state-dir", tmp_path)
        assert done.returncode == 2 and said in done.stderr, done.stderr


def test_jitter_waits_at_most_its_bound_and_is_bounded_itself(tmp_path):
    sock = listening()
    try:
        started = time.monotonic()
        done = smoke("health", "--tcp", "127.0.0.1:%d" % sock.getsockname()[1], "--jitter", "0.5", "--state-dir",
                     tmp_path)
        assert done.returncode == 0 and time.monotonic() - started < 5
    finally:
        sock.close()
    for bad in ("-1", "3601", "nan"):
        done = smoke("health", "--tcp", "127.0.0.1:1", "--jitter", bad)
        assert done.returncode == 2 and "--jitter" in done.stderr


def test_quiet_says_nothing_at_all_when_it_passed_and_everything_when_not(tmp_path):
    sock = listening()
    state = tmp_path / "state"
    state.mkdir()
    (state / "history.jsonl").write_text('{"command": "hea')  # a problem worth a line, were it not a pass
    try:
        done = smoke("health", "--tcp", "127.0.0.1:%d" % sock.getsockname()[1], "--quiet", "--state-dir", state,
                     "--output", tmp_path / "r.json")
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        assert "cut short" in json.loads((tmp_path / "r.json").read_text())["problems"][0]
    finally:
        sock.close()
    done = smoke("health", "--tcp", "127.0.0.1:1", "--quiet", "--state-dir", state)
    assert done.returncode == 1 and json.loads(done.stdout)["status"] == "fail"


def test_a_tier_sets_its_checks_defaults_and_with_tag_the_runs_deadline(tmp_path):
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"health": {
        "tiers": {"daily": {"timeout": 60, "deadline": 1}, "hourly": {"timeout": 0.3}},
        "checks": [{"name": "slow", "kind": "command", "command": ["sleep", "5"], "tags": ["daily"]},
                   {"name": "quick", "kind": "command", "command": ["sleep", "5"], "tags": ["hourly"]},
                   {"name": "own", "kind": "command", "command": ["true"], "tags": ["hourly"], "timeout": 7}]}}))
    done = smoke("health", "--config", path, "--dry-run")
    assert "slow  " in done.stdout and "timeout=60s" in done.stdout.splitlines()[0]
    assert "timeout=0.3s" in done.stdout.splitlines()[1] and "timeout=7s" in done.stdout.splitlines()[2]
    started = time.monotonic()
    done = smoke("health", "--config", path, "--tag", "daily", "--state-dir", tmp_path)
    assert done.returncode == 1 and time.monotonic() - started < 4
    assert "deadline exceeded (the tier's deadline 1s)" in json.loads(done.stdout)["results"][0]["message"]
    done = smoke("health", "--config", path, "--tag", "daily", "--deadline", "3", "--state-dir", tmp_path)
    assert "deadline exceeded (--deadline 3s)" in json.loads(done.stdout)["results"][0]["message"]  # the flag wins
    path.write_text(json.dumps({"health": {"tiers": {"daily": {"timeout": 60, "severity": "warning"}},
                                           "checks": []}}))
    done = smoke("health", "--config", path, "--validate")
    assert done.returncode == 2 and "health.tiers.daily" in done.stderr


def test_a_lock_never_wipes_a_file_that_is_not_a_lock(tmp_path):
    victim = tmp_path / "smoke.json"
    victim.write_text('{"health": {}}')
    done = smoke("health", "--tcp", "127.0.0.1:1", "--lock", victim, "--state-dir", tmp_path)
    assert done.returncode == 2 and "is not a lock file" in done.stderr
    assert victim.read_text() == '{"health": {}}'
    done = smoke("health", "--tcp", "127.0.0.1:1", "--output", tmp_path / "r", "--junit", tmp_path / "r")
    assert done.returncode == 2 and "writes there too" in done.stderr
