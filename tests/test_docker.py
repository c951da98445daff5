"""The docker kind against a real Docker Engine (Debian's docker.io, started by fixtures/docker-engine.sh).

Containers run local/busybox:1, built locally (no registry is reachable); each test's
containers carry a unique label and are removed afterwards. Where no engine answers,
the module skips, saying how to get one. There is no fake Docker.
"""

import json
import os
import shutil
import sys
import socket
import subprocess
import threading
import time
import uuid

import pytest

from conftest import run_check

SOCKET = "/run/docker.sock"
IMAGE = "local/busybox:1"


def docker(*args, check=True):
    return subprocess.run(["docker"] + list(args), capture_output=True, text=True, timeout=60, check=check,
                          env=dict(os.environ, DOCKER_HOST="unix://" + SOCKET))


@pytest.fixture(scope="module")
def engine():
    if not (os.path.exists(SOCKET) and shutil.which("docker")):
        pytest.skip("no Docker Engine on %s (run fixtures/docker-engine.sh as root): real-engine tests skipped" % SOCKET)
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.skip("the engine has no %s (fixtures/docker-engine.sh builds it)" % IMAGE)
    label = "smoke.test=%s" % uuid.uuid4().hex[:12]
    yield label
    ids = docker("ps", "-aq", "--filter", "label=" + label).stdout.split()
    if ids:
        docker("rm", "-f", *ids)


def start(label, name, *command, health=None, wait=True):
    """A container of this module's label; health is a shell test run as its healthcheck."""
    name = "smoke-%s-%s" % (label.split("=")[1], name)
    args = ["run", "--init", "--name", name, "--label", label, "--network", "none"]
    if health:
        args += ["--health-cmd", health, "--health-interval", "1s", "--health-timeout", "1s",
                 "--health-retries", "1", "--health-start-period", "0s"]
    docker(*(args + (["-d"] if wait else []) + [IMAGE] + list(command)))
    return name


def wait_for_health(name, status, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip() == status:
            return
        time.sleep(0.2)
    raise AssertionError("%s never became %s" % (name, status))


def check(**fields):
    fields.setdefault("socket", SOCKET)
    return run_check(kind="docker", timeout=10, **fields)


def test_a_running_container_passes(engine):
    name = start(engine, "idle", "sleep", "1000")
    result = check(container=name)
    assert result.status == "pass", result.message
    assert result.facts["containers"][name] == {"exists": True, "running": True, "status": "running", "health": None}
    assert (result.facts["count"], result.facts["running_count"]) == (1, 1)


def test_an_exited_container_fails_and_is_named(engine):
    name = start(engine, "done", "true", wait=False)
    result = check(container=name)
    assert result.status == "fail"
    assert result.message == "running: expected == true, got false"
    assert result.facts["not_running"] == [name]
    assert result.facts["containers"][name]["status"] == "exited"


def test_healthy_and_unhealthy_containers(engine):
    web = start(engine, "web", "httpd", "-f", "-p", "8080", "-h", "/var/www",
                health="wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1")
    sick = start(engine, "sick", "sleep", "1000", health="exit 1")
    wait_for_health(web, "healthy")
    wait_for_health(sick, "unhealthy")
    assert check(container=web).status == "pass"
    result = check(containers=[web, sick])
    assert result.status == "fail"
    assert result.message == "healthy: expected == true, got false"
    assert result.facts["not_healthy"] == [sick] and result.facts["running"] is True
    assert result.facts["containers"][web]["health"] == "healthy"


def test_a_missing_container_fails_with_exists_false(engine):
    result = check(containers=["smoke-no-such-container-%s" % uuid.uuid4().hex[:6]])
    assert result.status == "fail"
    missing = result.facts["missing"][0]
    assert result.facts["containers"][missing] == {"exists": False, "running": False, "status": "missing",
                                                   "health": None}
    assert result.facts["healthy"] is False and result.facts["not_healthy"] == [missing]


def test_four_containers_up_by_label(engine):
    """The on-call checklist line "docker ps shows 4 containers Up", for a labelled stack."""
    stack = engine.replace("=", "=stack-")
    names = [start(stack, "svc%d" % i, "sleep", "1000") for i in range(4)]
    result = check(label=stack, expect=["running_count == 4"])
    assert result.status == "pass", result.message
    assert sorted(result.facts["containers"]) == sorted(names)
    docker("stop", "-t", "0", names[2])
    result = check(label=stack, expect=["running_count == 4"])
    assert result.status == "fail"
    assert result.message == "running_count: expected == 4, got 3"
    assert result.facts["not_running"] == [names[2]]
    docker("rm", "-f", *names)
    result = check(label=stack)  # nothing carries the label any more: that is not "all running"
    assert result.status == "fail" and result.facts["count"] == 0


def forward_tcp_to(path):
    """A TCP port relaying to a unix socket, so the docker CLI can reach the engine by tcp://."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(path)
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_a_tcp_docker_host_is_asked_through_the_cli(engine, monkeypatch):
    """DOCKER_HOST=tcp://... names another engine: the local socket must not answer for it."""
    name = start(engine, "cli", "sleep", "1000")
    listener = forward_tcp_to(SOCKET)
    try:
        monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:%d" % listener.getsockname()[1])
        result = run_check(kind="docker", container=name, timeout=20)
        assert result.status == "pass", result.message
        result = run_check(kind="docker", label=engine, timeout=20, expect=["running_count >= 1"])
        assert result.status == "pass", result.message
        assert name in result.facts["containers"]
        monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
        assert run_check(kind="docker", container=name, timeout=10).status == "error"
    finally:
        listener.close()


def test_the_cli_as_a_user_runs_it(engine):
    name = start(engine, "shell", "sleep", "1000")
    done = subprocess.run([sys.executable, "smoke.py", "health", "--config", "/dev/stdin", "--format", "text"],
                          input=json.dumps({"health": {"checks": [{"name": "stack", "kind": "docker",
                                                                   "containers": [name]}]}}),
                          capture_output=True, text=True, timeout=60,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          env=dict(os.environ, DOCKER_HOST="unix://" + SOCKET))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1].startswith("PASS  stack ")
