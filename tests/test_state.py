"""checks/state.py: the lock and the run history, through real smoke.py runs: two at once, one killed
with kill -9, torn, unwritable and shared history files in tmp_path.
"""

import json
import signal
import socket
import subprocess
import sys
import time

from conftest import SMOKE, smoke


# --- the lock --------------------------------------------------------------------------------

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


def test_a_lock_never_wipes_a_file_that_is_not_a_lock(tmp_path):
    victim = tmp_path / "smoke.json"
    victim.write_text('{"health": {}}')
    done = smoke("health", "--tcp", "127.0.0.1:1", "--lock", victim, "--state-dir", tmp_path)
    assert done.returncode == 2 and "is not a lock file" in done.stderr
    assert victim.read_text() == '{"health": {}}'
    done = smoke("health", "--tcp", "127.0.0.1:1", "--output", tmp_path / "r", "--junit", tmp_path / "r")
    assert done.returncode == 2 and "writes there too" in done.stderr


# --- the history -----------------------------------------------------------------------------

def smoke_report(*args, cwd=None, stdin=None, timeout=120):
    """Run smoke.py; the process, its JSON report (or None) and the report's results by name."""
    done = subprocess.run([sys.executable, SMOKE] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, input=stdin)
    report = json.loads(done.stdout) if done.stdout.startswith("{") else None
    return done, report, {r["name"]: r for r in (report or {}).get("results", [])}


def test_the_history_is_bounded_survives_a_torn_line_and_concurrent_runs(tmp_path):
    state = tmp_path / "s"
    state.mkdir()
    (state / "history.jsonl").write_text('{"command": "health", "status": "pass"}\n{"command": "hea')
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"history_limit": 5, "health": {"checks": [{"name": "t", "kind": "command",
                                                                           "command": ["true"]}]}}))
    done, report, _ = smoke_report("health", "--config", path, "--state-dir", state)
    assert done.returncode == 0 and "last line is cut short" in done.stderr and "history" in report["problems"][0]
    lines = [json.loads(line) for line in (state / "history.jsonl").read_text().splitlines()]
    assert [line["command"] for line in lines] == ["health", "health"]
    procs = [subprocess.Popen([sys.executable, SMOKE, "health", "--config", str(path), "--state-dir", str(state)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(8)]
    for proc in procs:
        assert proc.wait(60) == 0 and not proc.stderr.read()
        proc.stderr.close()
    lines = [json.loads(line) for line in (state / "history.jsonl").read_text().splitlines()]
    assert 4 <= len(lines) <= 5 and all(line["status"] == "pass" for line in lines)  # trimmed to 90 %: 4, then 5


def test_a_history_that_cannot_be_written_never_changes_the_verdict(tmp_path):
    blocker = tmp_path / "file"  # the default state directory ($XDG_STATE_HOME/smoke.py) cannot be made
    blocker.write_text("")
    done = smoke("health", "--tcp", "127.0.0.1:%d" % _listening(), env={"XDG_STATE_HOME": str(blocker)})
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["status"] == "pass"
    assert "history: cannot write in" in done.stderr and "history" in report["problems"][0]


def test_a_state_directory_asked_for_that_cannot_be_used_is_exit_2_in_every_command(tmp_path):
    """--state-dir or the config's state_dir: exit 2 before anything runs, --validate and
    --dry-run too (they make nothing); the default one stays a problem line of the run."""
    import os

    blocker = tmp_path / "file"
    blocker.write_text("")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    ran = tmp_path / "ran"
    config = tmp_path / "smoke.json"
    touch = {"name": "c", "kind": "command", "command": ["touch", str(ran)]}
    config.write_text(json.dumps({"health": {"checks": [touch]},
                                  "rollback": {"triggers": ["pass_rate < 1"], "lock": str(tmp_path / "rb.lock"),
                                               "steps": [dict(touch, name="s")]}}))
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"command": "health", "status": "fail", "summary": {"total": 1, "fail": 1,
                                  "pass_rate": 0}, "results": [{"name": "c", "status": "fail"}]}))
    commands = (["health", "--config", config], ["all", "--config", config],
                ["rollback", "--config", config, "--from", report, "--execute"])
    for directory, said in ((blocker / "state", "Not a directory"), (shared, "can be written by other users")):
        for command in commands:
            for mode in ([], ["--validate"], ["--dry-run"]):
                done = smoke(*command, "--state-dir", directory, *mode)
                assert done.returncode == 2 and done.stderr.count("\n") == 1, (command, mode, done.stderr)
                assert "--state-dir" in done.stderr and said in done.stderr and not ran.exists(), done.stderr
        config_dir = dict(json.loads(config.read_text()), state_dir=str(directory))
        (tmp_path / "with-dir.json").write_text(json.dumps(config_dir))
        done = smoke("health", "--config", tmp_path / "with-dir.json")
        assert done.returncode == 2 and "with-dir.json: state_dir" in done.stderr and said in done.stderr
    assert not os.path.exists(str(tmp_path / "new"))
    done = smoke("health", "--config", config, "--state-dir", tmp_path / "new" / "state", "--validate")
    assert done.returncode == 0 and not os.path.exists(str(tmp_path / "new"))  # made by a run, not by --validate


def _listening():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    _listening.keep = sock  # open until the test process ends
    return sock.getsockname()[1]


# --- a state directory is ours alone; a lock others could hold is refused (run as root) -------

def test_a_history_in_a_directory_that_is_not_ours_alone_is_neither_read_nor_written(tmp_path):
    import os

    from conftest import NOBODY
    for mode, owner in ((0o777, None), (0o755, NOBODY), (0o770, 0)):  # 0770 root:nogroup: the group's others
        if owner is not None and os.geteuid() != 0:
            continue  # chown needs root
        state = tmp_path / ("state-%o" % mode)
        state.mkdir()
        state.chmod(mode)
        if owner is not None:
            os.chown(str(state), owner, NOBODY)
        (state / "history.jsonl").write_text('{"command": "health", "status": "fail", "failing": ["db"]}\n' * 5)
        before = (state / "history.jsonl").read_text()
        done = smoke("health", "--tcp", "127.0.0.1:1", "--name", "db", "--state-dir", state)  # asked for: exit 2
        assert done.returncode == 2 and (state / "history.jsonl").read_text() == before
        assert "can be written by other users" in done.stderr or "belongs to user" in done.stderr, done.stderr
        xdg = tmp_path / ("xdg-%o" % mode)  # the default, $XDG_STATE_HOME/smoke.py: the run goes on
        xdg.mkdir()
        state.rename(xdg / "smoke.py")
        state = xdg / "smoke.py"
        done = smoke("health", "--tcp", "127.0.0.1:1", "--name", "db", env={"XDG_STATE_HOME": str(xdg)})
        report = json.loads(done.stdout)
        assert done.returncode == 1 and (state / "history.jsonl").read_text() == before
        assert "history: cannot write in %s" % state in report["problems"][0]
        assert "can be written by other users" in report["problems"][0] or "belongs to user" in report["problems"][0]


def test_a_lock_file_another_user_owns_in_a_shared_directory_is_refused(tmp_path):
    import os

    import pytest

    from conftest import NOBODY, shared_dir
    if os.geteuid() != 0:
        pytest.skip("needs root: a file of another user (nobody) is made with chown")
    lock = shared_dir(tmp_path) / "smoke.lock"
    lock.write_text("")
    os.chown(str(lock), NOBODY, NOBODY)  # they made it first: they could hold it and stop every run
    done = smoke("health", "--tcp", "127.0.0.1:1", "--lock", lock, "--state-dir", tmp_path / "s")
    assert done.returncode == 2 and "belongs to user 65534, in a directory others can write" in done.stderr


def test_a_state_directory_another_user_could_swap_is_never_used_while_they_swap_it(tmp_path):
    import ctypes
    import os

    import pytest

    from conftest import NOBODY
    if os.geteuid() != 0:
        pytest.skip("needs root: nobody's directory is made with chown, the swapper runs as nobody")
    parent = tmp_path / "nbdir2"
    parent.mkdir()
    os.chown(str(parent), NOBODY, NOBODY)
    (parent / "smoke.py").mkdir(0o700)  # root's, 0700: ours alone, but in a directory nobody renames in
    (parent / "nb").mkdir(0o755)
    os.chown(str(parent / "nb"), NOBODY, NOBODY)
    dir_fd = os.open(str(parent), os.O_RDONLY)
    swapper = os.fork()
    if swapper == 0:  # nobody swaps smoke.py and nb, one step each (renameat2), until killed
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        libc = ctypes.CDLL(None, use_errno=True)
        while libc.renameat2(dir_fd, b"smoke.py", dir_fd, b"nb", 2) == 0:  # RENAME_EXCHANGE: one step each
            pass
        os._exit(1)
    os.close(dir_fd)
    try:
        for _ in range(4):  # the default state directory ($XDG_STATE_HOME/smoke.py): a problem line
            done = smoke("health", "--tcp", "127.0.0.1:1", env={"XDG_STATE_HOME": str(parent)})
            problem = (json.loads(done.stdout).get("problems") or ["no problem: the history was written"])[0]
            assert done.returncode == 1 and "%s belongs to user 65534, who may change it" % parent in problem, problem
        for _ in range(4):  # one asked for: exit 2, nothing run
            done = smoke("health", "--tcp", "127.0.0.1:1", "--state-dir", parent / "smoke.py")
            assert done.returncode == 2 and "%s belongs to user 65534, who may change it" % parent in done.stderr
        assert os.waitpid(swapper, os.WNOHANG) == (0, 0)  # still swapping
    finally:
        os.kill(swapper, signal.SIGKILL)
        os.waitpid(swapper, 0)
    assert os.listdir(str(parent / "smoke.py")) == os.listdir(str(parent / "nb")) == []


def test_a_lock_in_a_directory_another_user_owns_is_refused_not_waited_for(tmp_path):
    import fcntl
    import os

    import pytest

    from conftest import NOBODY
    if os.geteuid() != 0:
        pytest.skip("needs root: nobody's directory is made with chown, the holder runs as nobody")
    theirs = tmp_path / "nbdir"
    theirs.mkdir()
    os.chown(str(theirs), NOBODY, NOBODY)
    dir_fd = os.open(str(theirs), os.O_RDONLY)
    ready, hold = os.pipe()
    holder = os.fork()
    if holder == 0:  # nobody makes the lock file first and holds an flock on it, until killed
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        fcntl.flock(os.open("smoke.lock", os.O_RDWR | os.O_CREAT, 0o644, dir_fd=dir_fd), fcntl.LOCK_EX)
        os.write(hold, b"x")
        time.sleep(60)
        os._exit(0)
    os.close(dir_fd)
    try:
        assert os.read(ready, 1) == b"x"
        done = smoke("health", "--tcp", "127.0.0.1:1", "--lock", theirs / "smoke.lock", "--state-dir", tmp_path / "s")
        assert done.returncode == 2 and "belongs to user 65534, who may change it" in done.stderr, done.stderr
    finally:
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
        os.close(ready)
        os.close(hold)


def test_a_big_history_costs_a_run_an_append_and_is_trimmed_once_a_megabyte(tmp_path):
    """Past a megabyte the history is not read on an append: a line that is not JSON in its
    middle stays (a read would drop it), and the file keeps growing past history_limit until
    an append crosses the next megabyte, which trims it to its newest 90 %."""
    from checks import state

    run = json.dumps({"command": "health", "status": "pass", "failing": [], "passing": ["t"]}).encode() + b"\n"
    body = run * 20000 + b"not json\n" + run * 20000
    path = tmp_path / "history.jsonl"
    report = {"command": "health", "status": "pass", "results": [{"name": "t", "status": "pass"}]}
    path.write_bytes(body)
    size = path.stat().st_size
    assert state.SMALL < size and size % state.SMALL < state.SMALL - 4096
    assert state.record_run(str(tmp_path), report, limit=100) == []
    data = path.read_bytes()
    assert data.startswith(body) and b"not json" in data and data.count(b"\n") == 40002
    left = state.SMALL - path.stat().st_size % state.SMALL  # a line that leaves 10 bytes to the megabyte
    with open(str(path), "ab") as fh:
        fh.write(b'{"command": "health", "pad": "%s"}\n' % (b"x" * (left - 10 - 33)))
    assert state.SMALL - path.stat().st_size % state.SMALL == 10  # so the next append crosses it
    assert state.record_run(str(tmp_path), report, limit=100) == []
    lines = path.read_bytes().splitlines()
    assert len(lines) == 90 and b"not json" not in lines and json.loads(lines[-1])["command"] == "health"
    torn = path.read_bytes() + b'{"command": "hea'  # a torn last line is ended before the next is added
    path.write_bytes(torn)
    assert state.record_run(str(tmp_path), report, limit=100)[0].endswith("cut short (a write that did not "
                                                                            "finish): dropped")
    assert all(json.loads(line) for line in path.read_bytes().splitlines())


def test_a_history_others_could_write_is_neither_read_nor_written(tmp_path):
    """history.jsonl of ours, mode 0666, or another user's, in a state directory of ours (0755): nobody
    could append failing runs that never happened, which a notification's escalation and a rollback's
    consecutive_failures would count. Not read (a warning), not appended to (a problem line of the
    run); the verdict is the run's own. Judged on the file opened, not its name."""
    import os

    import pytest

    from checks import state
    from conftest import NOBODY
    if os.geteuid() != 0:
        pytest.skip("needs root: a file of another user (nobody) is made with chown")
    forged = json.dumps({"time": "2026-12-01T00:00:00.000Z", "command": "health", "status": "fail",
                         "failing": ["db"], "passing": []}) + "\n"
    report = tmp_path / "r.json"
    for mode, owner, said in ((0o666, 0, "can be written by other users (mode 0666)"),
                              (0o620, 0, "can be written by other users (mode 0620)"),  # group nogroup
                              (0o644, NOBODY, "belongs to user 65534")):
        directory = tmp_path / ("state-%o-%d" % (mode, owner))
        directory.mkdir(mode=0o755)
        history = directory / "history.jsonl"
        history.write_text(forged * 5)
        os.chown(str(history), owner, NOBODY)
        history.chmod(mode)
        runs, warnings = state.history(str(directory))
        assert runs == [] and warnings == ["history: not read: %s %s: another user could have written in it what "
                                           "never happened (%s)" % (history, said, "it is not ours: move it away"
                                                                    if owner else "chmod go-w it")]
        done = smoke("health", "--tcp", "127.0.0.1:1", "--name", "db", "--state-dir", directory, "--output", report)
        problems = json.loads(done.stdout)["problems"]
        assert done.returncode == 1 and history.read_text() == forged * 5, done.stderr
        assert problems == ["history: this run is not recorded: %s %s: another user could have written in it what "
                            "never happened (%s)" % (history, said, "it is not ours: move it away" if owner
                                                     else "chmod go-w it")], problems
        done = smoke("rollback", "--from", report, "--trigger", 'check.db.consecutive_failures >= 2',
                     "--state-dir", directory)
        judged = json.loads(done.stdout)["metrics"]["rollback"]
        assert not judged["triggers"][0]["fired"] and judged["warnings"][0].startswith("history: not read: "), judged
    history.chmod(0o600)  # once only we could have written it, it is read, and this run is added
    os.chown(str(history), 0, 0)
    done = smoke("health", "--tcp", "127.0.0.1:1", "--name", "db", "--state-dir", history.parent)
    assert done.returncode == 1 and "problems" not in json.loads(done.stdout)
    assert len(state.history(str(history.parent))[0]) == 6
    done = smoke("rollback", "--from", report, "--trigger", 'check.db.consecutive_failures >= 2',
                 "--state-dir", history.parent)
    assert json.loads(done.stdout)["metrics"]["rollback"]["triggers"][0]["fired"], done.stdout
