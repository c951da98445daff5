"""checks/lifecycle.py: signals, cleanup and the reaper. Real smoke.py processes are sent SIGHUP, SIGTERM
and SIGKILL while real commands (and their setsid and setpgid children) run, found again in /proc;
Cleanup in-process.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from checks.lifecycle import Cleanup
from conftest import SMOKE, config, running, smoke


# --- Cleanup ---------------------------------------------------------------------------------

def test_cleanup_runs_newest_first_and_past_failures():
    cleanup, order = Cleanup(), []
    cleanup.add(lambda: order.append("first"), "one")
    token = cleanup.add(lambda: order.append("removed"), "two")
    cleanup.add(lambda: 1 / 0, "model m-1")
    cleanup.add(lambda: order.append("last"), "four")
    cleanup.remove(token)
    left = cleanup.run_all()
    assert order == ["last", "first"]
    assert left == [("model m-1", "division by zero")]
    assert cleanup.run_all(close=True) == []  # each action runs once
    cleanup.add(lambda: order.append("late"), "five")  # closed: undone at once
    assert order == ["last", "first", "late"]


# --- signals: a report, cleanup and the signal's exit code -----------------------------------

SLEEPERS = ["sh", "-c", "sleep 300 & sleep 300"]


def sleepers_of(marker):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/environ" % entry, "rb") as fh:
                    if marker.encode() in fh.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def start_sleepers(tmp_path, marker, output=None, command=SLEEPERS):
    path = config(tmp_path, [{"name": "sleepy", "kind": "command", "command": command, "timeout": 120,
                              "env": {"SMOKE_TEST_MARKER": marker}}])
    argv = [sys.executable, SMOKE, "health", "--config", path] + (["--output", output] if output else [])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if len(sleepers_of(marker)) >= 3:
            break
        time.sleep(0.05)
    assert len(sleepers_of(marker)) >= 3
    return proc


def test_sighup_reports_cleans_up_and_exits_129(tmp_path):
    marker = "hup-%d" % os.getpid()
    proc = start_sleepers(tmp_path, marker, str(tmp_path / "r.json"))
    proc.send_signal(signal.SIGHUP)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 129
    for report in (json.loads(out), json.loads((tmp_path / "r.json").read_text())):
        assert report["interrupted"] == "SIGHUP" and report["exit_code"] == 129
        assert report["status"] == "error"  # the run was not judged as a whole: never "pass"
    time.sleep(0.3)
    assert sleepers_of(marker) == []


def test_a_signal_while_the_report_is_printed_ends_the_run_with_its_code(service, tmp_path):
    path = config(tmp_path, [{"name": "c%d" % i, "kind": "http", "url": service + "/echo"} for i in range(300)])
    reader, writer = os.pipe()  # nobody reads it: the report cannot be printed
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--config", path], stdout=writer,
                            stderr=subprocess.PIPE)
    os.close(writer)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(10) == 143
    finally:
        os.close(reader)


def test_a_signal_while_the_report_is_delivered_still_ends_the_run_with_its_code(service, tmp_path):
    fifo = tmp_path / "slow.fifo"
    os.mkfifo(str(fifo))
    holder = os.open(str(fifo), os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads
    path = config(tmp_path, [{"name": "c%d" % i, "kind": "http", "url": service + "/echo"} for i in range(100)])
    proc = subprocess.Popen([sys.executable, SMOKE, "health", "--config", path, "--output", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # the checks are done; the report waits for the FIFO's reader
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(holder)
    assert proc.returncode == 143 and json.loads(out)["interrupted"] == "SIGTERM"


# --- the reaper: no child outlives the run ---------------------------------------------------

def test_a_child_that_leaves_its_group_is_killed_when_the_run_ends(tmp_path):
    marker = "setsid-%d" % os.getpid()
    path = config(tmp_path, [{"name": "daemon", "kind": "command", "shell": True,
                              "command": "setsid sleep 301 & echo started", "env": {"SMOKE_TEST_MARKER": marker}}])
    done = smoke("health", "--config", path)
    assert done.returncode == 0
    deadline = time.monotonic() + 5
    while sleepers_of(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers_of(marker) == []


# A sleeper in a process group of its own (setpgid, as a shell's job control does), and one in ours.
REGROUPED = [sys.executable, "-c", "import os, subprocess, time; subprocess.Popen(['sleep', '300'], "
             "preexec_fn=lambda: os.setpgid(0, 0)); subprocess.Popen(['sleep', '300']); time.sleep(300)"]


@pytest.mark.parametrize("command", [SLEEPERS, REGROUPED], ids=["own-group", "regrouped"])
def test_a_kill_9_of_smoke_py_orphans_nothing(tmp_path, command):
    marker = "kill9-%d" % os.getpid()
    proc = start_sleepers(tmp_path, marker, command=command)
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 5
    while sleepers_of(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers_of(marker) == []


# --- after kill -9 of smoke.py, nothing it started or changed stays ---------------------------

ESCAPED = ["sh", "-c", "setsid sleep 300 & sleep 300"]  # a daemon leaving its group and session


def test_a_kill_9_leaves_no_process_that_left_its_session(tmp_path):
    marker = "kill9-setsid-%d" % os.getpid()
    proc = start_sleepers(tmp_path, marker, command=ESCAPED)
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 5
    while sleepers_of(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers_of(marker) == []


def test_a_kill_9_during_a_deploy_leaves_no_spawned_server_and_no_credentials(tmp_path):
    marker = "kill9-deploy-%d" % os.getpid()
    config = tmp_path / "deploy.json"
    config.write_text(json.dumps({"deploy": {
        "targets": [{"name": "a", "credentials": {".trussrc": "api_key = k-secret-0001"}},
                    {"name": "b", "credentials": {".trussrc": "api_key = k-secret-0002"}}],
        "deploy": {"kind": "spawn", "command": ["sh", "-c", "setsid sleep 300 & sleep 300"],
                   "log": str(tmp_path / "{target}.log"), "env": {"SMOKE_TEST_MARKER": marker}},
        "ready": {"kind": "command", "command": ["sleep", "60"], "timeout": 120}}}))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.Popen([sys.executable, SMOKE, "deploy", "--config", str(config), "--state-dir",
                             str(tmp_path / "s")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, TMPDIR=str(tmpdir)))
    deadline = time.monotonic() + 10
    while len(sleepers_of(marker)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sleepers_of(marker)) >= 4 and len(os.listdir(str(tmpdir))) == 2
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 5
    while (sleepers_of(marker) or os.listdir(str(tmpdir))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers_of(marker) == [] and os.listdir(str(tmpdir)) == []  # the API keys are gone too


def test_a_process_heartbeat_stopped_is_continued_after_a_kill_9(tmp_path):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    log = tmp_path / "events.log"
    log.write_text("")
    try:
        proc = subprocess.Popen([sys.executable, SMOKE, "heartbeat", "--pid", str(victim.pid), "--signal", "SIGSTOP",
                                 "--log", str(log), "--failure-pattern", r"worker (?P<worker>\S+) failed",
                                 "--expect-worker", "w1", "--deadline", "30"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while state_of(victim.pid) != "T" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state_of(victim.pid) == "T"  # stopped to test detection, and now smoke.py dies
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 5
        while state_of(victim.pid) == "T" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state_of(victim.pid) in ("S", "R")  # a production process is never left frozen
    finally:
        victim.kill()
        victim.wait()


def state_of(pid):
    with open("/proc/%d/stat" % pid) as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


# --- after kill -9: what cleared the mark and left the session, found by pid and start time -------

def kill_9_when_running(argv, token, count):
    """Start smoke.py, wait until `count` processes with token run (and a renewal of its record of
    them), kill -9 it; then wait until they are gone, or 5 s."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while len(running(token)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(running(token)) >= count
    time.sleep(0.6)  # the record is renewed every 0.25 s
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 5
    while running(token) and time.monotonic() < deadline:
        time.sleep(0.1)


# Each leaves its session, with an environment without the run's mark.
UNMARKED = {"env-i": "setsid env -i sleep {t} & sleep {t}",
            "env-u": "env -u SMOKE_PY_RUN setsid sleep {t} & sleep {t}",
            "orphaned": "setsid sh -c 'env -i sleep {t} & exit 0'; sleep {t}"}


@pytest.mark.parametrize("command", list(UNMARKED.values()), ids=list(UNMARKED))
def test_a_kill_9_leaves_no_process_that_cleared_its_mark_and_left_its_session(tmp_path, command):
    token = "302.%d" % os.getpid()
    path = config(tmp_path, [{"name": "escape", "kind": "command", "shell": True, "command": command.format(t=token),
                              "timeout": 120}])
    kill_9_when_running([sys.executable, SMOKE, "health", "--config", path], token, 2)
    assert running(token) == []


def test_a_kill_9_during_a_deploy_leaves_no_spawned_process_that_cleared_its_mark(tmp_path):
    token = "303.%d" % os.getpid()
    path = tmp_path / "deploy.json"
    path.write_text(json.dumps({"deploy": {
        "concurrency": 3, "targets": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "deploy": {"kind": "spawn", "shell": True, "log": str(tmp_path / "{target}.log"),
                   "command": "setsid env -i sleep %s & exec sleep %s" % (token, token)},
        "ready": {"kind": "command", "command": ["sleep", "60"], "timeout": 120}}}))
    kill_9_when_running([sys.executable, SMOKE, "deploy", "--config", str(path), "--state-dir", str(tmp_path / "s")],
                        token, 6)
    assert running(token) == []


# --- a signal before the checks: still a report ------------------------------------------------

def held_then_answered():
    """A server that holds its first connection unanswered (a hung start ping) and answers 200 to
    the rest; (its port, the list of connections held)."""
    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held = []

    def serve():
        while True:
            conn, _ = sock.accept()
            if not held:
                held.append(conn)
                continue
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return sock.getsockname()[1], held


@pytest.mark.parametrize("stage, signum", [("while the config was read", signal.SIGTERM),
                                           ("in --jitter", signal.SIGHUP),
                                           ("while --ping's start was sent", signal.SIGINT)])
def test_a_signal_before_the_checks_still_gives_an_interrupted_report(tmp_path, stage, signum):
    path = config(tmp_path, [{"name": "true", "kind": "command", "command": ["true"]}])
    argv = [sys.executable, SMOKE, "health", "--config", path, "--output", str(tmp_path / "r.json"), "--state-dir",
            str(tmp_path / "s")]
    wait = 10
    if stage.startswith("while the config"):  # smoke.py waits for the FIFO's writer
        fifo = tmp_path / "smoke.fifo"
        os.mkfifo(str(fifo))
        argv[argv.index(path)] = str(fifo)

        def ready():
            return any(os.path.realpath("/proc/%d/fd/%s" % (proc.pid, fd)) == str(fifo)
                       for fd in os.listdir("/proc/%d/fd" % proc.pid))
    elif stage == "in --jitter":  # nothing to see from outside: a second and a half in
        argv += ["--jitter", "3600"]
        ready, wait = (lambda: False), 1.5
    else:  # the start ping waits for an answer
        port, held = held_then_answered()
        argv += ["--ping", "http://127.0.0.1:%d/p" % port]
        ready = held.__len__
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + wait
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err
    for report in (json.loads(out), json.loads((tmp_path / "r.json").read_text())):
        assert report["interrupted"] == name and report["exit_code"] == 128 + signum
        assert report["problems"][0] == "interrupted by %s %s: no check was run" % (name, stage)
    assert "smoke.py: interrupted by %s %s: no check was run\n" % (name, stage) in err
