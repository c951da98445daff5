"""The non-HTTP check kinds against real things: sockets on 127.0.0.1, subprocesses, files, /proc.

Every check goes through the real runner (conftest.run_check), so status and message
are what a user would see.
"""

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

import pytest

from checks import ConfigError
from checks.kinds import build_check, docker
from checks.runner import RunContext, run_checks
from conftest import ROOT, free_port, gone, run_check

PY = sys.executable


def config_error(**table):
    with pytest.raises(ConfigError) as caught:
        run_check(**table)
    return str(caught.value)


def timed(**table):
    started = time.monotonic()
    result = run_check(**table)
    return result, time.monotonic() - started


def run_bounded(**table):
    """Like run_check, through run_checks: a probe that hangs is given up on, not waited for."""
    table.setdefault("name", "t")
    started = time.monotonic()
    results = run_checks([build_check(table, "health.checks[0]", "health")], RunContext())
    return results[0], time.monotonic() - started


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Server:
    """A real listening TCP socket in a thread; `handle(conn)` runs for each connection."""

    def __init__(self, handle, family=socket.AF_INET, host="127.0.0.1"):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.handle, self.conns = handle, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def close(self):
        for conn in [self.sock] + self.conns:
            try:
                conn.close()
            except OSError:
                pass


@pytest.fixture
def server():
    made = []

    def start(handle, **kwargs):
        made.append(Server(handle, **kwargs))
        return made[-1]
    yield start
    for each in made:
        each.close()


def send_banner(conn):
    conn.sendall(b"SSH-2.0-test\r\n")


def echo_line(conn):
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(1024)
        if not chunk:
            return
        data += chunk
    conn.sendall(data)


def stay_silent(conn):
    time.sleep(5)


# --- tcp ---------------------------------------------------------------------------------

def test_tcp_connects_to_a_listening_port(server):
    srv = server(stay_silent)
    result = run_check(kind="tcp", address="127.0.0.1:%d" % srv.port)
    assert result.status == "pass", result.message
    assert result.facts["connected"] is True
    assert 0 <= result.facts["latency_ms"] < 1000
    assert "banner" not in result.facts


def test_tcp_refused_port_fails_with_connection_refused():
    result = run_check(kind="tcp", address="127.0.0.1:%d" % free_port())
    assert result.status == "fail"
    assert result.message == "connection refused"
    assert result.facts["connected"] is False


def test_tcp_reads_a_banner(server):
    srv = server(send_banner)
    address = "127.0.0.1:%d" % srv.port
    result = run_check(kind="tcp", address=address, read_banner=True, expect=["banner == SSH-2.0-test"])
    assert result.status == "pass", result.message
    assert result.facts["banner"] == "SSH-2.0-test"
    result = run_check(kind="tcp", address=address, read_banner=True, expect=["banner contains OpenSSH"])
    assert result.status == "fail"
    assert result.message == 'banner: expected contains "OpenSSH", got "SSH-2.0-test"'


def test_tcp_sends_a_line_and_reads_the_answer(server):
    srv = server(echo_line)
    result = run_check(kind="tcp", address="127.0.0.1:%d" % srv.port, send="PING smoke",
                       expect=["banner == 'PING smoke'"])
    assert result.status == "pass", result.message
    assert result.facts["banner"] == "PING smoke"


def test_tcp_silent_server_fails_within_the_timeout(server):
    srv = server(stay_silent)
    result, took = timed(kind="tcp", address="127.0.0.1:%d" % srv.port, read_banner=True, timeout=0.5)
    assert result.status == "fail"
    assert result.message == "no banner within 0.5s"
    assert result.facts["connected"] is True
    assert took < 1.5


@pytest.mark.parametrize("address", ["nohost", "host:99999", "[::1]:x", "host:0", "host:", ":80",
                                     "host:\u00b2"])
def test_tcp_bad_address_is_a_config_error_naming_the_field(address):
    message = config_error(kind="tcp", address=address)
    assert message == ("health.checks[0].address: expected host:port such as 127.0.0.1:5432, got %r"
                       % address)


def test_tcp_ipv6_loopback(server):
    try:
        srv = server(send_banner, family=socket.AF_INET6, host="::1")
    except OSError as exc:
        pytest.skip("no IPv6 loopback on this machine: %s" % exc)
    result = run_check(kind="tcp", address="[::1]:%d" % srv.port, read_banner=True,
                       expect=["connected == true", "banner == SSH-2.0-test"])
    assert result.status == "pass", result.message
    assert result.name == "t"


# --- command -----------------------------------------------------------------------------

def test_command_argv_facts():
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    result = run_check(kind="command", command=[PY, "-c", code])
    assert result.status == "pass", result.message
    assert result.facts["exit_code"] == 0
    assert result.facts["stdout"] == "out\n"
    assert result.facts["stderr"] == "err\n"
    assert result.facts["latency_ms"] >= 0


def test_command_nonzero_exit_fails():
    result = run_check(kind="command", command=[PY, "-c", "raise SystemExit(3)"])
    assert result.status == "fail"
    assert result.message == "exit_code: expected == 0, got 3"
    assert result.facts["exit_code"] == 3


def test_command_version_fact():
    import platform
    result = run_check(kind="command", command=[PY, "--version"], expect=["version >= 3.8"])
    assert result.status == "pass", result.message
    assert result.facts["version"] == platform.python_version()
    result = run_check(kind="command", command=[PY, "--version"], expect=["version >= 99.1"])
    assert result.status == "fail"
    assert result.message == 'version: expected >= 99.1, got "%s"' % platform.python_version()


def test_a_command_printing_only_digits_does_not_stall_the_version_fact():
    started = time.monotonic()
    result = run_check(kind="command", command=[sys.executable, "-c", "print('1' * 3000000)"],
                       max_output=4 * 1024 * 1024, timeout=10)
    assert time.monotonic() - started < 5 and result.status == "pass"
    assert "version" not in result.facts


def test_command_string_without_shell_is_split_like_a_shell_would():
    command = "%s -c 'import sys; print(sys.argv[1:])' 'a b' c" % shlex.quote(PY)
    result = run_check(kind="command", command=command)
    assert result.status == "pass", result.message
    assert result.facts["stdout"] == "['a b', 'c']\n"
    # No shell: a pipe would be just an argument, and "echo hi | grep x" pass silently; so it is an error,
    # and a literal "|" goes in the list form.
    message = config_error(kind="command", command="%s -c 'import sys; print(sys.argv[1:])' | cat" % shlex.quote(PY))
    assert message == ("health.checks[0].command: '|' is shell syntax, but the command runs without a shell: "
                       "set shell = true, or give the argv as a list")
    result = run_check(kind="command", command=[PY, "-c", "import sys; print(sys.argv[1:])", "|", "cat"])
    assert result.facts["stdout"] == "['|', 'cat']\n"


def test_command_unbalanced_quote_is_a_config_error():
    assert config_error(kind="command", command="echo 'oops") == \
        "health.checks[0].command: No closing quotation"


def test_command_shell_runs_through_sh():
    result = run_check(kind="command", shell=True, command="printf 'b\\na\\n' | sort | tr a-z A-Z",
                       expect=["stdout == 'A\nB\n'"])
    assert result.status == "pass", result.message
    assert result.facts["stdout"] == "A\nB\n"


def test_command_env_is_added_to_the_inherited_environment():
    code = "import os; print(os.environ['SMOKE_TEST_VAR'], 'PATH' in os.environ)"
    result = run_check(kind="command", command=[PY, "-c", code], env={"SMOKE_TEST_VAR": "xyz"})
    assert result.status == "pass", result.message
    assert result.facts["stdout"] == "xyz True\n"


def test_command_cwd(tmp_path):
    result = run_check(kind="command", command=[PY, "-c", "import os; print(os.getcwd())"], cwd=str(tmp_path))
    assert result.facts["stdout"] == "%s\n" % os.path.realpath(str(tmp_path))
    result = run_check(kind="command", command=[PY, "-c", "pass"], cwd=str(tmp_path / "nope"))
    assert result.status == "error"
    assert result.message == "cannot run: %s not found" % (tmp_path / "nope")


def test_command_missing_executable_is_an_error_naming_it():
    for command in (["no-such-binary-xyz", "--version"], "no-such-binary-xyz --version"):
        result = run_check(kind="command", command=command)
        assert result.status == "error"
        assert result.message == "cannot run: no-such-binary-xyz not found"


def test_command_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    code = ("import os, time\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    time.sleep(60)\n"
            "    os._exit(0)\n"
            "open(%r, 'w').write(str(pid))\n"
            "time.sleep(60)\n" % str(pidfile))
    result, took = timed(kind="command", command=[PY, "-c", code], timeout=0.5)
    assert result.status == "fail"
    assert result.message == "timed out after 0.5s"
    assert took < 2
    grandchild = int(pidfile.read_text())
    assert wait_until(lambda: gone(grandchild), 2), "grandchild %d outlived its check" % grandchild


def test_command_background_child_does_not_hold_the_check(tmp_path):
    # The command exits at once but leaves a child holding stdout and stderr open.
    pidfile = tmp_path / "bg.pid"
    result, took = timed(kind="command", shell=True, timeout=5,
                         command="sleep 30 & echo $! > %s; echo started" % shlex.quote(str(pidfile)))
    assert result.status == "pass", result.message
    assert result.facts["stdout"] == "started\n"
    assert took < 1.5
    background = int(pidfile.read_text())
    assert wait_until(lambda: gone(background), 2), "background child %d outlived its check" % background


def test_command_output_is_capped_and_the_command_still_finishes():
    code = "import sys; sys.stdout.write('x' * 10000000); sys.stderr.write('e' * 3000000)"
    tracemalloc.start()
    try:
        result = run_check(kind="command", command=[PY, "-c", code], max_output=1000, timeout=20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status == "pass", result.message
    assert result.facts["exit_code"] == 0
    assert result.facts["stdout"] == "x" * 1000 + "\n… (9999000 more bytes)"
    assert result.facts["stderr"] == "e" * 1000 + "\n… (2999000 more bytes)"
    assert peak < 2 * 1024 * 1024, "reading 13 MB of output peaked at %d bytes" % peak


def test_command_config_errors():
    assert config_error(kind="command", shell=True, command=["echo", "hi"]) == \
        "health.checks[0].command: with shell = true, give the command as one string"
    assert config_error(kind="command", command=[]) == "health.checks[0].command: the command is empty"
    assert config_error(kind="command", command="   ") == "health.checks[0].command: the command is empty"
    assert config_error(kind="command", command=["echo", 3]) == \
        "health.checks[0].command[1]: expected a string, got a number 3"
    assert config_error(kind="command", command=["true"], env={"A": 1}) == \
        "health.checks[0].env.A: expected a string"


# --- process -----------------------------------------------------------------------------

@pytest.fixture
def sleeper():
    """Start real sleeping Pythons, each with a unique marker argument; killed afterwards."""
    procs = []

    def start(marker=None, argv0=None):
        marker = marker or "smoke-marker-%s" % uuid.uuid4().hex
        argv = [argv0 or PY, "-c", "import time; time.sleep(60)", marker]
        procs.append(subprocess.Popen(argv, executable=PY))
        cmdline = "/proc/%d/cmdline" % procs[-1].pid
        assert wait_until(lambda: marker.encode() in Path(cmdline).read_bytes()), "exec did not happen"
        return procs[-1], marker
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def write_pidfile(tmp_path, content):
    path = tmp_path / "app.pid"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def test_process_pidfile_of_a_live_process(tmp_path, sleeper):
    proc, _ = sleeper()
    result = run_check(kind="process", pidfile=write_pidfile(tmp_path, "%d\n" % proc.pid))
    assert result.status == "pass", result.message
    assert result.facts == {"running": True, "count": 1, "pids": [proc.pid]}


def test_process_pidfile_naming_a_dead_pid(tmp_path):
    proc = subprocess.Popen([PY, "-c", "pass"])
    proc.wait()
    path = write_pidfile(tmp_path, str(proc.pid))
    result = run_check(kind="process", pidfile=path)
    assert result.status == "fail"
    assert result.message == "running: expected == true, got false"
    assert result.facts["running"] is False
    assert result.facts["count"] == 0
    assert result.facts["pidfile_error"] == "%s names pid %d, which is not running" % (path, proc.pid)


def test_process_missing_pidfile(tmp_path):
    path = str(tmp_path / "none.pid")
    result = run_check(kind="process", pidfile=path)
    assert result.status == "fail"
    assert result.facts["running"] is False
    assert result.facts["pidfile_error"] == "%s does not exist" % path


@pytest.mark.parametrize("content, shown", [
    ("hello", "'hello'"),
    ("", "''"),
    ("-5", "'-5'"),
    ("0", "'0'"),                                # kill(0, 0) would find our own process group
    ("99999999999999999999", "'99999999999999999999'"),  # kill() would overflow
    (b"\xff\xfe\x00garbage", None),               # not text at all
])
def test_process_garbage_pidfile_is_not_running(tmp_path, content, shown):
    path = write_pidfile(tmp_path, content)
    result = run_check(kind="process", pidfile=path)
    assert result.status == "fail", result.message
    assert result.facts["running"] is False
    assert result.facts["pidfile_error"].startswith("%s holds " % path)
    assert result.facts["pidfile_error"].endswith(", not a pid")
    if shown:
        assert result.facts["pidfile_error"] == "%s holds %s, not a pid" % (path, shown)


def test_process_unreadable_pidfile_is_an_error(tmp_path):
    result = run_check(kind="process", pidfile=str(tmp_path))
    assert result.status == "error"
    assert result.message == "cannot read pidfile %s: Is a directory" % tmp_path


def test_process_pattern_counts_matching_command_lines(sleeper):
    first, marker = sleeper()
    second, _ = sleeper(marker)
    result = run_check(kind="process", pattern=marker + "$", expect=["count == 2"])
    assert result.status == "pass", result.message
    assert result.facts == {"running": True, "count": 2, "pids": sorted([first.pid, second.pid])}
    first.kill()
    first.wait()
    result = run_check(kind="process", pattern=marker, expect=["count == 2"])
    assert result.status == "fail"
    assert result.message == "count: expected == 2, got 1"


def test_process_pattern_matching_nothing():
    result = run_check(kind="process", pattern="smoke-marker-%s" % uuid.uuid4().hex)
    assert result.status == "fail"
    assert result.message == "running: expected == true, got false"
    assert result.facts == {"running": False, "count": 0, "pids": []}


def test_process_executable_matches_the_program_name(sleeper):
    name = "smoke-exe-%s" % uuid.uuid4().hex[:8]
    proc, _ = sleeper(argv0=name)  # argv[0], as `ps` shows it
    result = run_check(kind="process", executable=name)
    assert result.status == "pass", result.message
    assert result.facts["pids"] == [proc.pid]
    # The kernel's name for it (comm) matches too, alongside any other process of that program.
    comm = Path("/proc/%d/comm" % proc.pid).read_text().strip()
    result = run_check(kind="process", executable=comm)
    assert proc.pid in result.facts["pids"]
    # A name is not a pattern: a part of it does not match.
    result = run_check(kind="process", executable=name[:-1])
    assert result.facts["count"] == 0


def test_process_zombie_is_not_running(tmp_path):
    marker = "smoke-marker-%s" % uuid.uuid4().hex
    proc = subprocess.Popen([PY, "-c", "pass", marker])
    try:
        assert wait_until(lambda: gone(proc.pid)), "child did not exit"
        assert os.path.exists("/proc/%d" % proc.pid)  # not reaped: a zombie
        result = run_check(kind="process", pidfile=write_pidfile(tmp_path, str(proc.pid)))
        assert result.facts["running"] is False
        assert result.facts["pidfile_error"].endswith("names pid %d, which is not running" % proc.pid)
    finally:
        proc.wait()


def test_process_config_errors():
    one_of = "health.checks[0]: give exactly one of pidfile, executable or pattern"
    assert config_error(kind="process") == one_of
    assert config_error(kind="process", pidfile="/run/x.pid", pattern="x") == one_of
    assert config_error(kind="process", executable="x", pattern="x") == one_of
    message = config_error(kind="process", pattern="(unclosed")
    assert message.startswith("health.checks[0].pattern: bad regular expression: missing ), unterminated")


# --- docker ------------------------------------------------------------------------------

def docker_engine_reachable():
    path = docker._socket_from_env()
    if path and os.path.exists(path):  # a socket left by a dead engine refuses: no engine
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(path)
                return True
            except OSError:
                return False
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def no_engine():
    if docker_engine_reachable():
        pytest.skip("a Docker engine is reachable here; these tests are about having none")


def assert_one_line_error(result):
    assert result.status == "error", (result.status, result.message)
    assert result.message and "\n" not in result.message
    return result.message


def test_docker_without_an_engine_is_an_error(no_engine, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    message = assert_one_line_error(run_check(kind="docker", container="web"))
    if os.path.exists("/var/run/docker.sock"):  # left by an engine that died
        assert message == "docker API at /var/run/docker.sock: connection refused"
    elif not shutil.which("docker"):
        assert message == "docker: no Engine API socket at /var/run/docker.sock and no docker CLI on PATH"
    else:  # the CLI runs, and cannot connect
        assert message.startswith("docker: ")


def test_docker_without_a_socket_or_cli_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("DOCKER_HOST", "unix://%s" % (tmp_path / "docker.sock"))
    message = assert_one_line_error(run_check(kind="docker", container="web"))
    assert message == "docker: no Engine API socket at %s and no docker CLI on PATH" % (tmp_path / "docker.sock")


def test_docker_named_socket_missing_is_an_error_without_asking_the_cli(tmp_path, monkeypatch):
    # A `docker` on PATH that would answer "running": it must not be asked about another engine.
    fake_cli = tmp_path / "docker"
    fake_cli.write_text("#!/bin/sh\necho '{\"Running\": true, \"Status\": \"running\"}'\n")
    fake_cli.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    path = str(tmp_path / "nowhere" / "docker.sock")
    message = assert_one_line_error(run_check(kind="docker", containers=["web", "db"], socket=path))
    assert message == "docker: no Engine API socket at %s" % path


def test_docker_cli_that_cannot_run_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "docker").write_text("not executable")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("DOCKER_HOST", "unix://%s" % (tmp_path / "docker.sock"))
    message = assert_one_line_error(run_check(kind="docker", container="web"))
    assert message == "docker: cannot run the docker CLI: Permission denied"


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker CLI on PATH")
def test_docker_cli_that_cannot_resolve_its_host_is_an_error(no_engine, monkeypatch):
    # The CLI says "no such host": that is not "no such container".
    monkeypatch.setenv("DOCKER_HOST", "tcp://nohost.invalid:2375")
    result = run_check(kind="docker", container="web", timeout=3)
    assert_one_line_error(result)


def unix_server(path, handle):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(4)

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return sock


def test_docker_socket_that_is_not_the_engine_is_an_error(tmp_path):
    # Misconfigurations, not stand-ins for Docker: a stale socket file, a socket speaking
    # something else, and one that never answers.
    stale = str(tmp_path / "stale.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(stale)
    sock.close()
    result = run_check(kind="docker", container="web", socket=stale)
    assert assert_one_line_error(result) == "docker API at %s: connection refused" % stale

    def chatter(conn):
        conn.recv(4096)
        conn.sendall(b"hello, I am not Docker\r\n")
        conn.close()
    other = str(tmp_path / "other.sock")
    listener = unix_server(other, chatter)
    result = run_check(kind="docker", container="web", socket=other)
    listener.close()
    assert assert_one_line_error(result) == \
        "docker API at %s: the answer is not HTTP (is this the Docker socket?)" % other

    silent = str(tmp_path / "silent.sock")
    listener = unix_server(silent, stay_silent)
    result, took = timed(kind="docker", container="web", socket=silent, timeout=0.5)
    listener.close()
    assert assert_one_line_error(result) == "docker API at %s: timed out" % silent
    assert took < 1.5


def test_docker_real_engine():
    if not docker_engine_reachable():
        pytest.skip("no Docker engine on this machine")
    name = "smoke-no-such-container-%s" % uuid.uuid4().hex[:8]
    result = run_check(kind="docker", container=name)
    assert result.status == "fail", result.message
    assert result.facts["containers"][name] == {"exists": False, "running": False, "status": "missing",
                                                "health": None}


def test_docker_config_errors():
    either = "health.checks[0]: give container (a name), containers (a list of names) or label (key or key=value)"
    assert config_error(kind="docker") == either
    assert config_error(kind="docker", container="a", containers=["b"]) == either
    assert config_error(kind="docker", container="a", label="app=x") == either
    assert config_error(kind="docker", containers=[]) == "health.checks[0].containers: give at least one container"
    assert config_error(kind="docker", label=" = ") == "health.checks[0].label: give a label key, or key=value"


# --- resources ---------------------------------------------------------------------------

def meminfo_percent():
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info[key] = int(value.split()[0])
    return 100.0 * (info["MemTotal"] - info["MemAvailable"]) / info["MemTotal"]


def test_resources_facts_are_sane(tmp_path):
    paths = ["/", str(tmp_path)]
    result = run_check(kind="resources", paths=paths, cpu_window_s=0.1, expect=["cpus >= 1", "cpu_percent >= 0"])
    assert result.status == "pass", result.message
    facts = result.facts
    for key in ("memory_percent", "cpu_percent", "disk_percent"):
        assert 0 <= facts[key] <= 100, (key, facts[key])
    assert sorted(facts["disks"]) == sorted(paths)
    assert facts["disk_percent"] == max(facts["disks"].values())
    assert facts["cpus"] == os.cpu_count() >= 1
    assert all(facts[k] >= 0 for k in ("load1", "load5", "load15"))
    assert abs(facts["memory_percent"] - meminfo_percent()) < 3


def test_resources_samples_cpu_only_when_a_condition_reads_it():
    started = time.monotonic()
    result = run_check(kind="resources", cpu_window_s=2, expect=["memory_percent < 100"])
    assert result.status == "pass", result.message
    assert "cpu_percent" not in result.facts and time.monotonic() - started < 0.5
    result = run_check(kind="resources", cpu_window_s=0.2, expect=["memory_percent < 100", "cpu_percent <= 100"])
    assert result.status == "pass" and result.duration_ms >= 190


def test_resources_cpu_percent_sees_a_busy_process():
    busy = subprocess.Popen([PY, "-c", "while True: pass"])
    try:
        time.sleep(0.1)
        result = run_check(kind="resources", cpu_window_s=0.3, expect=["cpu_percent > 0"])
    finally:
        busy.kill()
        busy.wait()
    assert result.status == "pass", result.message


def test_resources_missing_path_is_an_error():
    result = run_check(kind="resources", paths=["/", "/no-such-dir-xyz"], cpu_window_s=0)
    assert result.status == "error"
    assert result.message == "cannot stat filesystem /no-such-dir-xyz: No such file or directory"


def test_resources_unmet_threshold_explains_itself():
    result = run_check(kind="resources", cpu_window_s=0, expect=["memory_percent < 0.001"])
    assert result.status == "fail"
    assert result.message == "memory_percent: expected < 0.001, got %s" % json.dumps(result.facts["memory_percent"])


def test_resources_config_errors():
    assert config_error(kind="resources", paths=[]) == "health.checks[0].paths: give at least one path"
    assert config_error(kind="resources", cpu_window_s=-1) == \
        "health.checks[0].cpu_window_s: must be at least 0, got -1"


# --- file --------------------------------------------------------------------------------

def test_file_exists_with_mode_and_size(tmp_path):
    path = tmp_path / "app.conf"
    path.write_bytes(b"x" * 1234)
    path.chmod(0o640)
    result = run_check(kind="file", path=str(path), expect=["exists == true", "mode == 0640", "size_bytes == 1234"])
    assert result.status == "pass", result.message
    assert result.facts["is_dir"] is False
    assert result.facts["mode"] == "0640"
    result = run_check(kind="file", path=str(path), expect=["mode == 0644"])
    assert result.status == "fail"
    assert result.message == 'mode: expected == 0644, got "0640"'


def test_file_missing_fails(tmp_path):
    result = run_check(kind="file", path=str(tmp_path / "nope"))
    assert result.status == "fail"
    assert result.message == "exists: expected == true, got false"
    assert result.facts == {"exists": False}
    result = run_check(kind="file", path=str(tmp_path / "nope"), expect=["exists == false"])
    assert result.status == "pass"


def test_file_under_a_file_does_not_exist(tmp_path):
    (tmp_path / "plain").write_text("x")
    result = run_check(kind="file", path=str(tmp_path / "plain" / "child"), expect=["exists == false"])
    assert result.status == "pass", result.message


def test_file_age(tmp_path):
    path = tmp_path / "heartbeat"
    path.write_text("x")
    hour_ago = time.time() - 3600
    os.utime(str(path), (hour_ago, hour_ago))
    result = run_check(kind="file", path=str(path), expect=["age_s < 60"])
    assert result.status == "fail"
    assert abs(result.facts["age_s"] - 3600) < 5
    assert result.message == "age_s: expected < 60, got %s" % json.dumps(result.facts["age_s"])


def test_file_json_facts():
    flags = str(ROOT / "fixtures" / "flags.json")
    result = run_check(kind="file", path=flags, expect=["json.flags.orchestration_enabled == true",
                                                        "json.version >= 3"])
    assert result.status == "pass", result.message
    result = run_check(kind="file", path=flags, expect=["json.flags.new_checkout == true"])
    assert result.status == "fail"
    assert result.message == "json.flags.new_checkout: expected == true, got false"


def test_file_json_by_flag_for_any_name(tmp_path):
    path = tmp_path / "flags.conf"
    path.write_text('{"x": 1}')
    assert run_check(kind="file", path=str(path), json=True, expect=["json.x == 1"]).status == "pass"
    result = run_check(kind="file", path=str(path), expect=["json.x == 1"])
    assert result.status == "fail"
    assert result.message == "json.x: missing"


def test_file_invalid_json(tmp_path):
    path = tmp_path / "flags.json"
    path.write_text("{not json")
    result = run_check(kind="file", path=str(path), expect=["json.x == 1"])
    assert result.status == "fail"
    assert result.facts["json_error"].startswith("%s is not valid JSON: " % path)
    assert result.message == "json.x: missing (%s)" % result.facts["json_error"]
    assert "\n" not in result.message
    path.write_bytes(b'{"x": "\xff"}')
    result = run_check(kind="file", path=str(path), expect=["json.x == 1"])
    assert result.facts["json_error"].startswith("%s is not valid JSON: " % path)


def test_file_json_over_max_bytes(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"x": 1, "pad": "p" * 200}))
    result = run_check(kind="file", path=str(path), max_bytes=100, expect=["json.x == 1"])
    assert result.status == "fail"
    assert result.facts["json_error"] == "%s is over max_bytes (100 bytes)" % path
    assert result.message == "json.x: missing (%s is over max_bytes (100 bytes))" % path
    assert run_check(kind="file", path=str(path), expect=["json.x == 1"]).status == "pass"


def test_file_unreadable_is_an_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root, which can read a chmod 000 file")
    path = tmp_path / "secret.json"
    path.write_text("{}")
    path.chmod(0)
    result = run_check(kind="file", path=str(path))
    assert result.status == "error"
    assert result.message == "cannot read %s: Permission denied" % path


def test_file_that_cannot_be_read_is_an_error():
    # Even root cannot read /proc/self/mem at offset 0: a real read error.
    result = run_check(kind="file", path="/proc/self/mem", json=True)
    assert result.status == "error"
    assert result.message == "cannot read /proc/self/mem: Input/output error"


def test_file_directory(tmp_path):
    (tmp_path / "d.json").mkdir()
    result = run_check(kind="file", path=str(tmp_path / "d.json"), expect=["is_dir == true"])
    assert result.status == "pass", result.message
    assert "json" not in result.facts and "json_error" not in result.facts


def test_file_fifo_is_not_opened(tmp_path):
    path = tmp_path / "pipe.json"
    os.mkfifo(str(path))
    result, took = run_bounded(kind="file", path=str(path), timeout=1, expect=["exists == true", "json.x == 1"])
    assert took < 1
    assert result.status == "fail"
    assert result.message == "json.x: missing (%s is not a regular file)" % path


# --- log ---------------------------------------------------------------------------------

def write_log(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_log_absent_pattern_passes(tmp_path):
    path = write_log(tmp_path / "app.log", ["INFO start", "INFO ready"])
    result = run_check(kind="log", path=path, pattern="ERROR", expect=["count == 0"])
    assert result.status == "pass", result.message
    assert result.facts == {"count": 0, "lines_read": 2}


def test_log_present_pattern_fails_with_the_evidence(tmp_path):
    path = write_log(tmp_path / "app.log", ["INFO start", "ERROR disk full", "INFO x", "ERROR db down", "INFO y"])
    result = run_check(kind="log", path=path, pattern="ERROR", expect=["count == 0"])
    assert result.status == "fail"
    assert result.message == "count: expected == 0, got 2"
    assert result.facts["count"] == 2
    assert result.facts["last_match"] == "ERROR db down"


def test_log_only_the_last_lines_count(tmp_path):
    lines = ["INFO line %d" % i for i in range(1, 1001)]
    lines[9] = "ERROR at line 10"
    path = write_log(tmp_path / "app.log", lines)
    result = run_check(kind="log", path=path, pattern="ERROR", lines=500, expect=["count == 0"])
    assert result.status == "pass", result.message
    assert result.facts["lines_read"] == 500
    result = run_check(kind="log", path=path, pattern="ERROR", lines=991, expect=["count == 0"])
    assert result.facts["count"] == 1
    assert result.facts["lines_read"] == 991
    result = run_check(kind="log", path=path, pattern="ERROR", lines=990, expect=["count == 0"])
    assert result.facts["count"] == 0


def test_log_last_line_without_newline_counts(tmp_path):
    path = tmp_path / "app.log"
    path.write_text("INFO a\nERROR b")
    result = run_check(kind="log", path=str(path), pattern="ERROR", lines=1, expect=["count == 1"])
    assert result.status == "pass", result.message
    assert result.facts["last_match"] == "ERROR b"


def read_bytes_so_far():
    """Bytes this process has read through read() calls (Linux /proc/self/io), or None."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        return None


def test_log_huge_file_is_tailed_without_reading_it_all(tmp_path):
    path = tmp_path / "huge.log"
    block = b"INFO 2026-11-21T17:00:00Z request served in 12ms\n" * 20000  # ~1 MB
    with open(str(path), "wb") as fh:
        for _ in range(50):
            fh.write(block)
        fh.write(b"ERROR at the very end\n")
    before = read_bytes_so_far()
    result, took = timed(kind="log", path=str(path), pattern="ERROR", lines=1000, expect=["count == 1"])
    after = read_bytes_so_far()
    assert result.status == "pass", result.message
    assert result.facts["lines_read"] == 1000
    assert took < 1
    if before is not None:
        assert after - before < 1024 * 1024


def test_log_huge_lines_are_tailed_quickly_and_never_read_as_absent(tmp_path):
    # 30 MB with no newline at all: at most MAX_TAIL_BYTES are read, in linear time. The last
    # 500 lines include "ERROR first", which cannot be looked at: that is no pass (issue 5).
    path = tmp_path / "blob.log"
    with open(str(path), "wb") as fh:
        fh.write(b"ERROR first\n")
        for _ in range(30):
            fh.write(b"x" * (1024 * 1024))
    result, took = timed(kind="log", path=str(path), pattern="ERROR", expect=["count == 0"])
    assert result.status == "error", result.message
    assert result.message == ("cannot check the last 500 lines of %s: they hold more than the 16 MiB read limit "
                              "(a single line may be that long)" % path)
    assert took < 1
    result = run_check(kind="log", path=str(path), pattern="ERROR", lines=1, expect=["count == 0"])
    assert result.status == "error"


def test_log_missing_file_is_an_error(tmp_path):
    path = tmp_path / "none.log"
    result = run_check(kind="log", path=str(path), pattern="ERROR", expect=["count == 0"])
    assert result.status == "error"
    assert result.message == "cannot read %s: No such file or directory" % path


def test_log_fifo_is_an_error_not_a_hang(tmp_path):
    path = tmp_path / "pipe.log"
    os.mkfifo(str(path))
    result, took = run_bounded(kind="log", path=str(path), pattern="ERROR", expect=["count == 0"], timeout=1)
    assert took < 1
    assert result.status == "error"
    assert result.message == "cannot read %s: not a regular file" % path


def test_log_config_errors(tmp_path):
    message = config_error(kind="log", path="/var/log/x", pattern="[unclosed", expect=["count == 0"])
    assert message.startswith("health.checks[0].pattern: bad regular expression: unterminated character set")
    assert config_error(kind="log", path="/var/log/x", pattern="ERROR") == \
        "health.checks[0].expect: a log check needs an expectation, e.g. 'count == 0'"
    assert config_error(kind="log", path="/var/log/x", pattern="E", lines=0, expect=["count == 0"]) == \
        "health.checks[0].lines: must be at least 1, got 0"


def test_log_ignore_case(tmp_path):
    path = write_log(tmp_path / "app.log", ["INFO ok", "Error: boom"])
    result = run_check(kind="log", path=path, pattern="ERROR", expect=["count == 0"])
    assert result.status == "pass", result.message
    result = run_check(kind="log", path=path, pattern="ERROR", ignore_case=True, expect=["count == 0"])
    assert result.status == "fail"
    assert result.facts["last_match"] == "Error: boom"


def test_log_non_utf8_bytes_do_not_crash(tmp_path):
    path = tmp_path / "app.log"
    path.write_bytes(b"\xff\xfe latin-1 caf\xe9\nERROR \x80\x81 bad bytes\n\xc3\n")
    result = run_check(kind="log", path=str(path), pattern="ERROR", expect=["count == 0"])
    assert result.status == "fail"
    assert result.facts["count"] == 1
    assert result.facts["last_match"] == "ERROR \ufffd\ufffd bad bytes"
    assert result.facts["lines_read"] == 3


def test_a_two_part_version_compares_as_a_version():
    result = run_check(kind="command", command=[sys.executable, "-c", "print('go version go1.21 linux/amd64')"],
                       expect=["version >= 1.9", "version < 1.100"])
    assert result.status == "pass", result.message
    assert result.facts["version"] == "1.21"


def test_a_checks_tags_add_to_the_section_defaults():
    check = build_check({"name": "t", "kind": "tcp", "address": "127.0.0.1:1", "tags": ["slow", "demo"]},
                        "health.checks[0]", "health", {"tags": ["demo", "hourly"]})
    assert check.tags == ("demo", "hourly", "slow")


# --- command and spawn: which processes are the run's ----------------------------------------

# A daemon: fork, setsid, fork again, stdio to /dev/null, its pid in a file, then a long sleep.
DAEMON = ("import os, sys, time\nif os.fork():\n    sys.exit(0)\nos.setsid()\nif os.fork():\n    os._exit(0)\n"
          "open(sys.argv[1], 'w').write(str(os.getpid()))\nnull = os.open(os.devnull, os.O_RDWR)\n"
          "for fd in (0, 1, 2):\n    os.dup2(null, fd)\ntime.sleep(120)\n")


def test_what_a_command_leaves_running_is_the_runs_unless_it_says_leave_running(tmp_path):
    from conftest import smoke
    pids = {}
    try:
        for leave in (False, True):
            pidfile = tmp_path / ("%s.pid" % leave)
            path = tmp_path / "smoke.json"
            path.write_text(json.dumps({"health": {"checks": [{"name": "start", "kind": "command", "command": [
                PY, "-c", DAEMON, str(pidfile)], "leave_running": leave}]}}))
            done = smoke("health", "--config", str(path), "--state-dir", str(tmp_path / "s"))
            assert done.returncode == 0, done.stdout + done.stderr
            pids[leave] = int(pidfile.read_text())
        time.sleep(1)  # both runs have ended: their reapers have done what they do
        assert gone(pids[False]) and not gone(pids[True])
        with open("/proc/%d/environ" % pids[True], "rb") as fh:
            assert b"SMOKE_PY_RUN=" not in fh.read()  # not marked as the run's
    finally:
        for pid in pids.values():
            if not gone(pid):
                os.kill(pid, 9)


def test_a_spawned_process_is_the_runs_and_cannot_be_left_running(tmp_path):
    from checks.kinds import STEP_KINDS
    with pytest.raises(ConfigError) as caught:
        build_check({"kind": "spawn", "command": ["sleep", "1"], "log": str(tmp_path / "log"), "leave_running": True},
                    "deploy.deploy", "deploy", kinds=STEP_KINDS)
    assert str(caught.value).startswith("deploy.deploy.leave_running: a spawned process is the run's")


def test_a_condition_on_a_fact_its_kind_never_gives_is_exit_2_at_load(tmp_path):
    """`latency < 200` on an http check is a typo of latency_ms: --validate says so (exit 2), and a
    run never reads it as the service's failure (exit 1, a deploy gate's rollback)."""
    from conftest import smoke
    for args, said in ((["--url", "http://127.0.0.1:1/", "--expect", "latency < 200"],
                        "http checks have no fact 'latency'; did you mean 'latency_ms'?"),
                       (["--tcp", "127.0.0.1:1", "--expect", "conected == true"],
                        "tcp checks have no fact 'conected'; did you mean 'connected'?")):
        for mode in (["--validate"], []):
            done = smoke("health", *(args + mode))
            assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr
    path = tmp_path / "smoke.json"  # every fact a kind gives, and an error, polls and waited_s, are fine
    path.write_text(json.dumps({"health": {"checks": [
        {"name": "h", "kind": "http", "url": "http://127.0.0.1:1/", "expect": ["latency_ms < 200", "error == x"],
         "until": ["status == 200"]},
        {"name": "f", "kind": "file", "path": "/etc/hostname", "expect": ["json.x == 1", "age_s > 0"]}]}}))
    done = smoke("health", "--config", str(path), "--validate")
    assert done.returncode == 0, done.stderr
