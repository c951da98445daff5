"""Every example config in examples/ passes --validate and --dry-run, as the docs promise; every whole config
and every smoke.py command the docs show is valid."""

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


def test_the_docs_show_the_example_config_as_it_is():
    doc = (ROOT / "docs" / "heartbeat.md").read_text()
    start = doc.index("```json", doc.index("## Redis Sentinel, spawned")) + len("```json")
    example = ROOT / "examples" / "heartbeat" / "redis-sentinel.json"
    assert json.loads(doc[start:doc.index("```", start)]) == json.loads(example.read_text())


DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SECTIONS = ("health", "deploy", "heartbeat", "perf", "rollback")


def _blocks(languages):
    """(file:line, text) of every fenced block in README.md and docs/*.md in one of languages."""
    import re
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(r"^ *```(\w*)\n(.*?)^ *```$", text, re.S | re.M):
            if match.group(1) in languages:
                where = "%s:%d" % (path.relative_to(ROOT), text.count("\n", 0, match.start()) + 1)
                found.append((where, match.group(2)))
    return found


def _harmless(name):
    """A value for a ${NAME} a documented config uses: a URL where a URL is due, else a placeholder."""
    return "http://127.0.0.1:9" if name.endswith("URL") else "placeholder-%s-0001" % name.lower()


def test_every_whole_config_in_the_docs_validates(tmp_path):
    """A JSON block with a section at its top is a whole config: it passes --validate. Blocks that are one
    check table or a report are fragments, and left alone."""
    import re
    validated, failures = 0, []
    for where, text in _blocks(("json",)):
        try:
            doc = json.loads(text)
        except ValueError:
            continue  # a fragment of a section ("preflight": [...], "build": [...])
        if not isinstance(doc, dict) or not any(key in doc for key in SECTIONS):
            continue
        path = tmp_path / ("config-%d.json" % validated)
        path.write_text(text)
        env = dict(os.environ, **{name: _harmless(name) for name in re.findall(r"\$\{(\w+)\}", text)})
        env.pop("SMOKE_CONFIG", None)
        for section in [key for key in SECTIONS if key in doc]:
            done = subprocess.run([sys.executable, str(ROOT / "smoke.py"), section, "--config", str(path),
                                   "--validate", "--state-dir", str(tmp_path / "state")],
                                  capture_output=True, text=True, timeout=60, cwd=str(ROOT), env=env)
            if done.returncode != 0:
                failures.append("%s: smoke.py %s --validate: exit %d: %s" % (where, section, done.returncode,
                                                                           done.stderr.strip()))
        validated += 1
    assert not failures, "\n".join(failures)
    assert validated >= 5, "only %d whole configs found in the docs" % validated


def _documented_commands():
    """(file:line, argv after smoke.py) of every smoke.py command in a ```sh or ```cron block of the docs:
    continuation lines joined, comments dropped, each command of a pipe or list on its own, redirections
    left out."""
    import shlex
    found = []
    for where, text in _blocks(("sh", "cron")):
        for line in text.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
            commands, words, skip = [], [], False
            for i, token in enumerate(tokens):
                if skip:
                    skip = False
                elif token in ("|", "||", "&&", ";", "&"):
                    commands.append(words)
                    words = []
                elif set(token) <= set("<>&"):  # a redirection (or a here-document): its target goes with it
                    skip = True
                elif token.isdigit() and i + 1 < len(tokens) and set(tokens[i + 1]) <= set("<>&"):
                    continue  # the 2 of 2>&1
                else:
                    words.append(token)
            commands.append(words)
            for words in commands:
                for i, word in enumerate(words[:-1]):
                    if word.startswith("python") and words[i + 1].endswith("smoke.py"):
                        found.append((where, words[i + 2:]))
                        break
    return found


@pytest.mark.parametrize("where, argv", _documented_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_smoke_command_in_the_docs_parses(where, argv):
    sys.path.insert(0, str(ROOT))
    import smoke
    try:
        smoke._parser(argv).parse_args(argv)
    except SystemExit as exc:
        pytest.fail("%s: smoke.py %s: exit %s" % (where, " ".join(argv), exc.code))


def test_the_docs_show_many_smoke_commands():
    assert len(_documented_commands()) >= 20
    assert {argv[0] for _, argv in _documented_commands()} >= set(SECTIONS) | {"all"}


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
