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


SCHEDULERS = ROOT / "examples" / "schedulers"


def _smoke_commands():
    """(file, argv after smoke.py) of every smoke.py command line in the scheduler examples."""
    import re
    import shlex
    found = []
    for path in sorted(SCHEDULERS.iterdir()):
        text = path.read_text()
        for match in re.finditer(r'\["python3", "[^"]*smoke\.py", (.*?)\]', text, re.S):  # a YAML list
            found.append((path.name, json.loads("[" + match.group(1) + "]")))
        for line in text.splitlines():
            command = re.search(r"smoke\.py ((health|deploy|heartbeat|perf|rollback|all) .*)", line)
            if command and not line.lstrip().startswith("#"):
                found.append((path.name, shlex.split(command.group(1).rstrip('"'))))
    return found


def test_every_scheduler_example_is_well_formed():
    import configparser
    names = {p.name for p in SCHEDULERS.iterdir()}
    assert names >= {"crontab", "smoke.service", "smoke.timer", "github-actions.yml", "gitlab-ci.yml",
                     "k8s-cronjob.yaml", "ansible-playbook.yml"}
    for unit in ("smoke.service", "smoke.timer"):
        parser = configparser.ConfigParser(strict=True, interpolation=None)
        parser.read_string((SCHEDULERS / unit).read_text())
        assert parser.sections()[0] == "Unit"
    for line in (SCHEDULERS / "crontab").read_text().splitlines():
        if line and not line.startswith("#") and "=" not in line.split()[0]:
            assert len(line.split()) > 6, line  # five time fields, a user, a command
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: the YAML examples are not parsed")
    for name in ("github-actions.yml", "gitlab-ci.yml", "k8s-cronjob.yaml", "ansible-playbook.yml"):
        assert yaml.safe_load((SCHEDULERS / name).read_text()), name


@pytest.mark.parametrize("where, argv", _smoke_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_smoke_command_in_the_scheduler_examples_parses(where, argv):
    sys.path.insert(0, str(ROOT))
    import smoke
    try:
        smoke._parser(argv).parse_args(argv)
    except SystemExit as exc:
        pytest.fail("%s: smoke.py %s: exit %s" % (where, " ".join(argv), exc.code))


def test_there_are_smoke_commands_in_every_scheduler_example():
    assert {where for where, _ in _smoke_commands()} == {"crontab", "smoke.service", "github-actions.yml",
                                                          "gitlab-ci.yml", "k8s-cronjob.yaml",
                                                          "ansible-playbook.yml"}
