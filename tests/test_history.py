"""The run history check by check (checks/history/) and `smoke.py history`: on histories written by
real runs, on records of every format that shipped, a torn last line, an empty or missing state
directory and one another user owns."""

import json
import os

import pytest

from conftest import NOBODY, as_root, smoke
from checks import history
from test_page import Page, strict


def run_health(tmp_path, state_dir, *flags):
    """One real run: `flag` passes while tmp_path/flag exists, `always` always, `sometimes` tagged hourly;
    `optional` warns, `tool` cannot run (error) and `retried` passes on its second attempt (flaky)."""
    path = tmp_path / "smoke.json"
    if not path.exists():
        mark = str(tmp_path / "attempted")
        path.write_text(json.dumps({"health": {"checks": [
            {"name": "flag", "kind": "file", "path": str(tmp_path / "flag"), "expect": ["exists == true"]},
            {"name": "always", "kind": "file", "path": str(path)},
            {"name": "sometimes", "kind": "file", "path": str(path), "tags": ["hourly"]},
            {"name": "optional", "kind": "file", "path": str(tmp_path / "none"), "expect": ["exists == true"],
             "severity": "warning"},
            {"name": "tool", "kind": "command", "command": [str(tmp_path / "no-such-tool")]},
            {"name": "retried", "kind": "command", "retries": 1, "retry_delay": 0,
             "command": ["sh", "-c", "if [ -e %s ]; then rm %s; else touch %s; exit 1; fi" % (mark, mark, mark)]}]}}))
    done = smoke("health", "--config", str(path), "--state-dir", str(state_dir), *flags)
    assert done.stdout.startswith("{"), done.stderr  # any verdict: these runs are what history reads
    return json.loads(done.stdout)


def history_of(state_dir, *flags):
    done = smoke("history", "--state-dir", str(state_dir), *flags)
    return done, json.loads(done.stdout) if "--format" in flags and done.stdout.startswith("{") else None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Five real runs: flag passes twice, then fails twice; the fifth, chosen by --tag hourly, runs only
    sometimes."""
    tmp_path = tmp_path_factory.mktemp("history")
    state_dir = tmp_path / "state"
    (tmp_path / "flag").write_text("on")
    reports = [run_health(tmp_path, state_dir), run_health(tmp_path, state_dir)]
    (tmp_path / "flag").unlink()
    reports += [run_health(tmp_path, state_dir) for _ in range(2)] + [run_health(tmp_path, state_dir, "--tag",
                                                                                 "hourly")]
    return state_dir, reports


# --- the command on real histories --------------------------------------------------------------

def test_each_check_says_its_last_status_since_when_its_streak_and_pass_rate(runs):
    state_dir, reports = runs
    done, found = history_of(state_dir, "--format", "json")
    assert done.returncode == 0 and found["runs"] == 5 and found["interrupted"] == 0, done.stderr
    rows = {row["name"]: row for row in found["checks"]}
    assert [row["name"] for row in found["checks"]][:3] == ["tool", "flag", "optional"]  # the worst first
    assert rows["flag"]["last"] == "fail" and rows["flag"]["streak"] == 2 and rows["flag"]["runs"] == 4
    assert rows["flag"]["since"] == reports[2]["started_at"] and rows["flag"]["pass_rate"] == 0.5
    assert rows["flag"]["recent"] == ["pass", "pass", "fail", "fail"]
    assert rows["always"]["streak"] == 4 and rows["always"]["since"] == reports[0]["started_at"]
    assert rows["sometimes"]["runs"] == 5 and rows["sometimes"]["last_time"] == reports[4]["started_at"]
    assert rows["tool"]["recent"] == ["error"] * 4 and rows["optional"]["recent"] == ["warn"] * 4
    assert rows["retried"]["flaky"] == 4 and rows["retried"]["last"] == "pass"


def test_text_is_a_table_for_an_incident_shell(runs):
    state_dir, reports = runs
    done, _ = history_of(state_dir)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[0].startswith("smoke.py history: 5 runs in %s, %s to %s" % (
        state_dir / "history.jsonl", reports[0]["started_at"], reports[-1]["started_at"]))
    flag = next(line for line in lines if line.startswith("flag "))
    assert "FAIL" in flag and "2 failing" in flag and "50% of 4" in flag and flag.endswith("..FF")
    assert next(line for line in lines if line.startswith("tool ")).endswith("EEEE")
    assert " 4 " in next(line for line in lines if line.startswith("retried "))  # flaky 4 times
    assert lines[-1] == "recent: . pass  w warn  F fail  E error"


def test_check_tag_command_and_last_narrow_it(runs):
    state_dir, _ = runs
    _, found = history_of(state_dir, "--format", "json", "--check", "flag")
    assert [row["name"] for row in found["checks"]] == ["flag"]
    _, found = history_of(state_dir, "--format", "json", "--tag", "hourly")
    assert found["runs"] == 1 and [row["name"] for row in found["checks"]] == ["sometimes"]  # the one tagged
    _, found = history_of(state_dir, "--format", "json", "--last", "2")
    assert found["runs"] == 2 and {row["name"]: row["runs"] for row in found["checks"]}["flag"] == 1
    done, found = history_of(state_dir, "--format", "json", "--command", "perf")
    assert done.returncode == 0 and found["runs"] == 0 and "no run of command 'perf' is kept (commands: health)" \
        in done.stderr
    done, _ = history_of(state_dir, "--check", "flga")
    assert done.returncode == 0 and "no run has a check named 'flga' (did you mean flag?)" in done.stderr


def test_html_writes_the_same_picture_as_a_page(runs, tmp_path):
    state_dir, _ = runs
    out = tmp_path / "history.html"
    done, _ = history_of(state_dir, "--html", str(out))
    assert done.returncode == 0 and done.stdout.startswith("smoke.py history: 5 runs"), done.stderr
    parsed = strict(out.read_text())
    cells = [a for tag, a in parsed.attrs if tag == "rect"]
    assert len(cells) == 4 * 5 + 5 and "failing 2 runs, since" in parsed.text and "50% of 4" in parsed.text
    flag = [a["class"] for a in cells[4:8]]  # tool's strip first, then flag's, newest last
    assert [a["class"] for a in cells[:4]] == ["f-error"] * 4 and flag == ["f-pass", "f-pass", "f-fail", "f-fail"]
    assert "4 flaky" in parsed.text
    done, _ = history_of(state_dir, "--html", str(tmp_path / "no-such-dir" / "h.html"))
    assert done.returncode == 2 and "--html" in done.stderr and "the directory does not exist" in done.stderr


def test_bad_usage_is_exit_2_in_one_line(runs):
    state_dir, _ = runs
    for flags in (["--last", "0"], ["--format", "xml"], ["--state-dir", " "], ["--chek", "flag"]):
        done, _ = history_of(state_dir, *flags)
        assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") <= 2, (flags, done.stderr)


# --- histories that are not whole ------------------------------------------------------------------

def test_a_torn_last_line_is_skipped_and_said(runs, tmp_path):
    state_dir, _ = runs
    torn = tmp_path / "state"
    torn.mkdir(mode=0o700)
    (torn / "history.jsonl").write_bytes((state_dir / "history.jsonl").read_bytes() + b'{"time": "2026-')
    done, found = history_of(torn, "--format", "json")
    assert done.returncode == 0 and found["runs"] == 5 and "last line is cut short" in done.stderr
    assert found["warnings"] and "cut short" in found["warnings"][0]


def test_an_empty_or_missing_state_directory_says_so_and_exits_0(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o700)
    for where in (empty, tmp_path / "missing"):
        done, _ = history_of(where)
        assert done.returncode == 0 and done.stdout.startswith("smoke.py history: no runs recorded in %s" % where)
        done, found = history_of(where, "--format", "json")
        assert done.returncode == 0 and found["runs"] == 0 and found["checks"] == []
    done, _ = history_of(empty, "--html", str(tmp_path / "h.html"))
    assert done.returncode == 0 and "0 (no runs)" in Page((tmp_path / "h.html").read_text()).text


@as_root
def test_a_state_directory_another_user_owns_is_not_read(runs, tmp_path):
    state_dir, _ = runs
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    (theirs / "history.jsonl").write_bytes((state_dir / "history.jsonl").read_bytes())
    os.chown(str(theirs), NOBODY, NOBODY)
    done, _ = history_of(theirs, "--format", "json")  # its runs exist: "no runs" would be a lie
    assert done.returncode == 2 and done.stdout == "" and done.stderr == (
        "smoke.py history: error: the history in %s is not read: %s belongs to user %d: a run's directory must be "
        "its own user's\n" % (theirs, theirs, NOBODY)), done.stderr


@as_root
def test_a_history_another_user_could_have_written_is_not_read(runs, tmp_path):
    """history.jsonl of root's with mode 0666, or nobody's, in a state directory of ours (0755): nobody
    could have written failing runs that never happened. Exit 2 in one line, as for a refused directory
    (its runs exist: "no runs recorded" would be a lie), with nothing written (--html)."""
    state_dir, _ = runs
    for owner, mode, said in ((0, 0o666, "can be written by other users (mode 0666)"),
                              (NOBODY, 0o644, "belongs to user 65534")):
        ours = tmp_path / ("ours-%d" % owner)
        ours.mkdir(mode=0o755)
        history_file = ours / "history.jsonl"
        history_file.write_bytes((state_dir / "history.jsonl").read_bytes())
        os.chown(str(history_file), owner, owner)
        history_file.chmod(mode)
        done, _ = history_of(ours, "--format", "json", "--html", str(tmp_path / "h.html"))
        assert done.returncode == 2 and done.stdout == "" and done.stderr == (
            "smoke.py history: error: the history in %s is not read: %s %s: another user could have written in it "
            "what never happened (%s)\n" % (ours, history_file, said, "chmod go-w it" if owner == 0 else
                                            "it is not ours: move it away")), done.stderr
        assert not (tmp_path / "h.html").exists()
    history_file.chmod(0o600)
    os.chown(str(history_file), 0, 0)
    done, found = history_of(history_file.parent, "--format", "json")
    assert done.returncode == 0 and found["runs"] == 5


def test_the_state_directory_a_config_names_is_read(runs, tmp_path):
    state_dir, _ = runs
    config = tmp_path / "smoke.json"
    config.write_text(json.dumps({"state_dir": str(state_dir), "health": {"checks": []}}))
    done = smoke("history", "--config", str(config), "--format", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["runs"] == 5, done.stderr


# --- records of every format ---------------------------------------------------------------------

FIRST = {"time": "2026-12-01T00:00:00.000Z", "command": "health", "status": "fail", "exit_code": 1,
         "duration_ms": 5.0, "failing": ["a"], "passing": ["b"]}  # 0.1.0: no selection
SECOND = dict(FIRST, time="2026-12-01T00:01:00.000Z", selection={"tag": ["hourly"]})
NEWER = dict(SECOND, time="2026-12-01T00:02:00.000Z", failing=["a", "c"], passing=["b", "d"], erroring=["c"],
             warning=["d"], flaky=["b"])


def test_statuses_read_every_format_of_the_record():
    assert history.statuses(FIRST) == {"a": "fail", "b": "pass"}
    assert history.statuses(NEWER) == {"a": "fail", "b": "pass", "c": "error", "d": "warn"}
    assert history.statuses({"failing": "a", "passing": [1, None, "b"]}) == {"b": "pass"}  # not lists: skipped
    assert history.statuses(dict(FIRST, passing=["a"])) == {"a": "fail"}  # the worse of two of one name


def test_interrupted_runs_are_passed_over_and_flaky_runs_counted():
    stopped = [dict(FIRST, time="2026-12-01T00:03:00.000Z", failing=[], passing=["a"], interrupted="SIGTERM"),
               dict(FIRST, time="2026-12-01T00:04:00.000Z", failing=[], passing=["a"], exit_code=143)]
    rows = {row["name"]: row for row in history.summarise([FIRST, SECOND, NEWER] + stopped)}
    assert rows["a"]["last"] == "fail" and rows["a"]["streak"] == 3 and rows["a"]["since"] == FIRST["time"]
    assert rows["b"]["flaky"] == 1 and rows["b"]["pass_rate"] == 1.0 and rows["d"]["last"] == "warn"
    assert [row["name"] for row in history.summarise([FIRST, SECOND, NEWER])] == ["c", "a", "d", "b"]
    assert [row["runs"] for row in history.summarise([FIRST, SECOND, NEWER], tags=["hourly"])] == [1, 2, 1, 2]
    assert history.summarise([FIRST, NEWER], check="c")[0]["recent"] == ["error"]


def test_the_command_reads_a_history_of_every_format(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    lines = [FIRST, SECOND, NEWER, {"not": "a run"}, dict(FIRST, time=None, failing=None)]
    (state_dir / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + "[1, 2]\n")
    done, found = history_of(state_dir, "--format", "json")
    assert done.returncode == 0 and found["runs"] == 5, done.stderr
    rows = {row["name"]: row for row in found["checks"]}
    assert rows["c"]["last"] == "error" and rows["b"]["runs"] == 4 and rows["a"]["runs"] == 3
    assert "1 line is not a JSON object: skipped" in done.stderr
