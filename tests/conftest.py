"""Shared test fixtures: the real fixture service on 127.0.0.1, a one-call check runner, and running
smoke.py itself as a user would (smoke(), a config file, its report, timed)."""

import json
import os
import socket
import subprocess
import tempfile
import time
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checks.kinds import build_check  # noqa: E402
from checks import runner  # noqa: E402
from fixtures.service import serve_in_thread  # noqa: E402

SMOKE = str(ROOT / "smoke.py")

# The tests run smoke.py as a user would, but never in a user's places: from an empty directory
# (a smoke.json in the checkout is no test's config) and with a state directory of their own
# (the user's ~/.local/state is left alone). Children inherit both.
NEUTRAL = Path(tempfile.mkdtemp(prefix="smoke-tests-"))
(NEUTRAL / "cwd").mkdir()
os.environ["XDG_STATE_HOME"] = str(NEUTRAL / "state")
os.environ.pop("SMOKE_CONFIG", None)


@pytest.fixture(scope="session", autouse=True)
def neutral_cwd():
    """In-process runs (smoke.main) start where a subprocess would: an empty directory."""
    before = os.getcwd()
    os.chdir(str(NEUTRAL / "cwd"))
    yield
    os.chdir(before)


def pytest_configure(config):
    config.addinivalue_line("markers", "serial: counts processes machine-wide, so it runs alone (make test runs "
                                       "these after the others when the rest run in parallel)")


@pytest.fixture(scope="session")
def service():
    """Base URL of the fixture service (http), shared by the whole session."""
    server, url = serve_in_thread()
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def tls_service():
    server, url = serve_in_thread(tls=True)
    yield url
    server.shutdown()
    server.server_close()


def run_check(**table):
    """Build a check from config fields (as a config file would give them) and run it once."""
    table.setdefault("name", "t")
    return runner.run_check(build_check(table, "health.checks[0]", "health"))


def free_port():
    """A port on 127.0.0.1 with nobody listening: bound, then released."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture(scope="module")
def listening_port():
    """A port on 127.0.0.1 that accepts connections (a tcp check passes), for the module."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


def wait_for_port(port: int, seconds: float = 10) -> None:
    """Until something on 127.0.0.1:port accepts a connection (a server just started), or seconds pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)


def gone(pid):
    """The process has exited: no such pid, or a zombie (PID 1 here may never reap orphans)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def read_terminal(master: int) -> bytes:
    """Everything a pseudo-terminal's far side wrote, once it has closed its end."""
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer has gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return seen


# --- running smoke.py as a user would --------------------------------------------------------
# test_cli.py's run(), test_state.py's smoke_report() and the smoke() of test_deploy.py, test_perf.py,
# test_notify.py and test_rollback.py are their files' own, with other signatures. Where `smoke` or
# `config` already names a module, these are imported as smoke_run (test_cli.py) or config_file
# (test_config.py).

def smoke(*args, env=None, timeout=60, **kw):
    """Run smoke.py from an empty directory with args (and env added to ours); the finished process."""
    kw.setdefault("cwd", str(NEUTRAL / "cwd"))
    return subprocess.run([sys.executable, SMOKE] + list(args), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), **kw)


def config(tmp_path, checks, **top):
    """Write tmp_path/smoke.json: a health section of these checks, and top-level fields; its path."""
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps(dict(top, health={"checks": checks})))
    return str(path)


def report_of(done):
    return json.loads(done.stdout)


def strict_json(text):
    """Parse as a strict reader would: no NaN or Infinity, valid UTF-8 all through."""
    def refuse(constant):
        raise AssertionError("%s is not JSON" % constant)
    text.encode("utf-8")
    return json.loads(text, parse_constant=refuse)


def timed_run(*args, **kw):
    """smoke() and how long it took, in seconds."""
    started = time.monotonic()
    done = smoke(*args, **kw)
    return done, time.monotonic() - started


# Another local user, for the rules that keep a root run from being steered: files and links of
# nobody's, in a directory every user may write (sticky, as /tmp).
NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files and links of another user (nobody) "
                                                      "are made with chown")


def shared_dir(tmp_path):
    """A directory every user may write, sticky, as /tmp and /var/tmp are."""
    shared = tmp_path / "shared"
    shared.mkdir(exist_ok=True)
    shared.chmod(0o1777)
    return shared


def planted_link(where, target):
    """A symbolic link of nobody's."""
    where.symlink_to(target)
    os.lchown(str(where), NOBODY, NOBODY)
    return where


def running(token):
    """The pids of processes with this word in their command line (zombies have none)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as fh:
                if token.encode() in fh.read().split(b"\0"):
                    found.append(int(entry))
        except (OSError, ValueError):
            pass
    return found
