"""Promises that span several modules and belong to none of them (docs/guarantees.md names the tests
that hold each promise): bytes from the environment pass config interpolation, the http probe and the
tcp kind unchanged. Real smoke.py runs against the fixture service on 127.0.0.1.
"""

import os
import subprocess
import sys

from conftest import SMOKE, config, strict_json


def test_bytes_from_the_environment_are_sent_as_those_bytes(service, tmp_path):
    path = config(tmp_path, [{"name": "echo", "kind": "http", "url": service + "/echo", "method": "POST",
                              "body": "${B}", "expect": ["status == 200"]},
                             {"name": "tcp", "kind": "tcp", "address": service.split("//")[1], "send": "${B}"}])
    env = {k.encode(): v.encode() for k, v in os.environ.items()}
    env[b"B"] = b"x\xffy"
    done = subprocess.run([sys.executable.encode(), SMOKE.encode(), b"health", b"--config", path.encode()],
                          capture_output=True, env=env, timeout=60)
    results = strict_json(done.stdout.decode())["results"]
    assert done.returncode == 0, results
    assert results[0]["facts"]["json"]["body"] == "x\ufffdy"  # the server got the byte 0xff


def test_a_link_or_a_directory_of_another_user_never_chooses_what_decides_a_run(service, tmp_path):
    """A config, a rollback's --from report and a perf --baseline are read only through what no
    other user could have changed: nobody's link in a shared directory to a file of root's (an
    old failing report, another config), or root's file in a directory nobody owns, is exit 2
    with one line; the same files named plainly, and a config from a pipe, are read."""
    import json

    import pytest

    from conftest import NOBODY, shared_dir
    if os.geteuid() != 0:
        pytest.skip("needs root: links of another user (nobody) are made with chown")
    mine = tmp_path / "mine"
    mine.mkdir()
    cfg = mine / "smoke.json"
    cfg.write_text(json.dumps({"health": {"checks": [{"name": "up", "kind": "http", "url": service + "/health"}]}}))
    report = mine / "failing.json"
    done = subprocess.run([sys.executable, SMOKE, "health", "--config", str(cfg), "--output", str(report),
                           "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    baseline = mine / "baseline.json"
    done = subprocess.run([sys.executable, SMOKE, "perf", "--url", service + "/health", "--requests", "20",
                           "--save-baseline", str(baseline), "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    theirs = tmp_path / "theirs"  # a directory of nobody's, as /run/redis is redis's
    theirs.mkdir()
    os.chown(str(theirs), NOBODY, NOBODY)
    shared = shared_dir(tmp_path)
    for name, target in (("cfg", cfg), ("report", report), ("baseline", baseline)):
        os.symlink(str(target), str(shared / name))
        os.lchown(str(shared / name), NOBODY, NOBODY)
    (theirs / "cfg.json").write_text(cfg.read_text())  # root's file, in nobody's directory
    state = ["--state-dir", str(tmp_path / "state")]
    for argv in (["health", "--config", str(shared / "cfg")], ["health", "--config", str(theirs / "cfg.json")],
                 ["rollback", "--from", str(shared / "report"), "--trigger", "pass_rate < 2"],
                 ["perf", "--url", service + "/health", "--requests", "5", "--baseline", str(shared / "baseline"),
                  "--threshold", "p95_ratio < 100"]):
        done = subprocess.run([sys.executable, SMOKE] + argv + state, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "not read: " in done.stderr, (
            argv, done.stderr)
    for argv in (["health", "--config", str(cfg)], ["rollback", "--from", str(report), "--trigger", "pass_rate < 0.5"]):
        done = subprocess.run([sys.executable, SMOKE] + argv + state, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (argv, done.stderr)
    done = subprocess.run(["bash", "-c", '"$0" "$1" health --config <(cat "$2") --state-dir "$3"', sys.executable,
                           SMOKE, str(cfg), str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
