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
