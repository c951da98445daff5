"""Every example config in examples/ passes --validate and --dry-run, as README promises."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

EXAMPLES = sorted((ROOT / "examples" / "deploy").glob("*.json"))
FAKE_KEYS = {"BASETEN_API_KEY_US": "k-us-example-0001", "BASETEN_API_KEY_EU": "k-eu-example-0002"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_an_example_validates_and_plans(path):
    for mode in ("--validate", "--dry-run"):
        done = subprocess.run([sys.executable, str(ROOT / "smoke.py"), "deploy", "--config", str(path), mode],
                              capture_output=True, text=True, timeout=30, env=dict(os.environ, **FAKE_KEYS))
        assert done.returncode == 0, done.stderr
        assert not any(key in done.stdout + done.stderr for key in FAKE_KEYS.values())


def test_there_is_an_example_per_platform():
    assert {p.stem for p in EXAMPLES} == {"bentoml", "mlserver", "truss-baseten", "openai-compatible"}


def test_the_readme_shows_the_example_config_as_it_is():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```json", readme.index("### Redis Sentinel, spawned")) + len("```json")
    example = ROOT / "examples" / "heartbeat" / "redis-sentinel.json"
    assert json.loads(readme[start:readme.index("```", start)]) == json.loads(example.read_text())
