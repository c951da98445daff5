"""checks/config.py: find, load (JSON/TOML), ${ENV} interpolation, secret-named fields, Fields. Real
files in tmp_path; bad configs are also given to a real smoke.py: exit 2, the field named."""

import os
import sys

import pytest

from checks import ConfigError, SmokeError
from checks import config
from checks.config import Fields, find, interpolate, load
from checks.secrets import Secrets
from conftest import config as config_file  # here `config` is the checks.config module
from conftest import NOBODY, as_root, smoke, timed_run

TOMLLIB = sys.version_info >= (3, 11)


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return str(path)


def config_error(call, *args, **kwargs):
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# --- find -------------------------------------------------------------------------------

def test_find_explicit_path_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "smoke.toml", "")
    assert find("other.json", environ={"SMOKE_CONFIG": "env.json"}) == "other.json"


def test_find_smoke_config_from_the_given_environ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "smoke.toml", "")
    assert find(None, environ={"SMOKE_CONFIG": "env.json"}) == "env.json"
    assert find("", environ={"SMOKE_CONFIG": "env.json"}) == "env.json"


def test_find_prefers_smoke_toml_then_smoke_json_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "smoke.json", "{}")
    assert find(None, environ={}) == "smoke.json"
    assert find(None, environ={"SMOKE_CONFIG": ""}) == "smoke.json"
    write(tmp_path / "smoke.toml", "")
    assert find(None, environ={}) == ("smoke.toml" if sys.version_info >= (3, 11) else "smoke.json")


def test_find_returns_none_when_there_is_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "other.json", "{}")
    assert find(None, environ={}) is None


# --- a config runs commands: only one that no other user could have written ---------------

def _planted(directory, ran, owner=None, mode=0o644):
    """directory/smoke.json whose checks (health, rollback) would make the file ran."""
    import json
    touch = {"name": "c", "kind": "command", "command": ["touch", str(ran)]}
    path = directory / "smoke.json"
    if path.exists():
        path.unlink()  # made anew: ours, unless owner says whose
    path.write_text(json.dumps({"health": {"checks": [touch]},
                                "rollback": {"triggers": ["pass_rate < 1"], "steps": [dict(touch, name="s")],
                                             "lock": str(directory / "rb.lock")}}))
    path.chmod(mode)
    if owner is not None:
        os.chown(str(path), owner, owner)
    return path


@as_root
@pytest.mark.parametrize("command", ["health", "all", "rollback"])
def test_a_config_found_in_a_directory_others_can_write_is_never_run(tmp_path, command):
    """Root in /tmp (sticky, anyone writes): ./smoke.json is refused whoever owns it, since
    another user could have put it (or a smoke.toml beside it) there; given with --config, a
    file of ours there is read."""
    import json
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    ran = tmp_path / "ran"
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"command": "health", "status": "fail", "summary": {"pass_rate": 0.0},
                                  "results": [{"name": "c", "status": "fail"}]}))
    argv = [command] + (["--from", str(report), "--execute", "--state-dir", str(tmp_path / "s")]
                        if command == "rollback" else [])
    for owner in (NOBODY, None):
        _planted(shared, ran, owner)
        done = smoke(*argv, cwd=str(shared))
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and not ran.exists(), done.stderr
        assert "./smoke.json: not read: this directory (%s) can be written by other users (mode 1777)" % shared \
            in done.stderr and "give it: --config ./smoke.json" in done.stderr, done.stderr
    done = smoke("health", "--config", "./smoke.json", cwd=str(shared))  # ours, named: read
    assert done.returncode == 0 and ran.exists(), done.stderr


@as_root
def test_a_config_another_user_owns_or_can_write_is_refused_however_it_is_given(tmp_path):
    """Found here, --config or $SMOKE_CONFIG: a file of another user's (not root), or one that
    others can write, is exit 2 before anything runs; ours (or root's) and 0644 is read."""
    ran = tmp_path / "ran"
    path = _planted(tmp_path, ran, owner=NOBODY)
    for argv, env in ((["health"], {}), (["health", "--config", str(path)], {}),
                      (["health"], {"SMOKE_CONFIG": str(path)}), (["all", "--config", str(path), "--validate"], {})):
        done = smoke(*argv, cwd=str(tmp_path), env=env)
        assert done.returncode == 2 and not ran.exists(), done.stderr
        assert "smoke.json: not read: it belongs to user %d, and what it says runs as you" % NOBODY in done.stderr
    os.chown(str(path), 0, 0)
    path.chmod(0o666)
    done = smoke("health", "--config", path)
    assert done.returncode == 2 and "not read: it can be written by other users (mode 0666)" in done.stderr
    assert "(or chmod go-w)" in done.stderr and not ran.exists()
    path.chmod(0o644)
    done = smoke("health", cwd=str(tmp_path))
    assert done.returncode == 0 and ran.exists(), done.stderr
    fifo = tmp_path / "theirs.fifo"  # refused at once, not waited on
    os.mkfifo(str(fifo))
    os.chown(str(fifo), NOBODY, NOBODY)
    done, took = timed_run("health", "--config", fifo)
    assert done.returncode == 2 and "belongs to user %d" % NOBODY in done.stderr and took < 5
    done = smoke("health", "--config", "/dev/stdin", "--validate", input=path.read_text())  # a pipe of ours
    assert done.returncode == 0, done.stderr


# --- load: JSON -------------------------------------------------------------------------

def test_load_valid_json(tmp_path):
    path = write(tmp_path / "c.json", '{"health": {"checks": [{"url": "http://127.0.0.1:1/", "timeout": 2}]}}')
    assert load(path, Secrets(), environ={}) == {
        "health": {"checks": [{"url": "http://127.0.0.1:1/", "timeout": 2}]}}


@pytest.mark.parametrize("text, where, reason", [
    ('{\n  "health": {\n    "url" "http://x"\n  }\n}\n', "3:11", "Expecting ':' delimiter"),
    ("{", "1:2", "Expecting property name enclosed in double quotes"),
    ("", "1:1", "Expecting value"),
    ('{"a": 1}\n{"b": 2}', "2:1", "Extra data"),
])
def test_load_malformed_json_names_line_and_column(tmp_path, text, where, reason):
    path = write(tmp_path / "c.json", text)
    assert config_error(load, path, Secrets(), environ={}) == "%s:%s: invalid JSON: %s" % (path, where, reason)


def test_load_json_with_a_utf8_bom(tmp_path):
    path = write(tmp_path / "c.json", b'\xef\xbb\xbf{"health": {"url": "http://x"}}')
    assert load(path, Secrets(), environ={}) == {"health": {"url": "http://x"}}


def test_bom_does_not_shift_error_columns(tmp_path):
    path = write(tmp_path / "c.json", b'\xef\xbb\xbf{\n  "a" 1}')
    assert config_error(load, path, Secrets(), environ={}) == (
        "%s:2:7: invalid JSON: Expecting ':' delimiter" % path)


def test_load_missing_file_is_one_line(tmp_path):
    path = str(tmp_path / "nope.json")
    message = config_error(load, path, Secrets(), environ={})
    assert message == "%s: cannot read config: No such file or directory" % path
    assert "\n" not in message


def test_load_unreadable_path_is_one_line(tmp_path):
    path = str(tmp_path)  # a directory cannot be read as a file
    assert config_error(load, path, Secrets(), environ={}) == "%s: cannot read config: Is a directory" % path


def test_load_not_utf8(tmp_path):
    path = write(tmp_path / "c.json", b'{"a": "\xff"}')
    assert config_error(load, path, Secrets(), environ={}) == "%s: config is not UTF-8 (byte 7)" % path


@pytest.mark.parametrize("text", ["[1, 2]", '"health"', "3", "null"])
def test_load_top_level_must_be_an_object(tmp_path, text):
    path = write(tmp_path / "c.json", text)
    assert config_error(load, path, Secrets(), environ={}) == (
        '%s: the top level must be an object of sections, e.g. {"health": {...}}' % path)


def test_config_error_is_a_usage_error():
    assert issubclass(ConfigError, SmokeError)
    assert ConfigError.exit_code == 2


# --- load: TOML -------------------------------------------------------------------------

def toml_needs_311(path):
    return "%s: TOML needs Python 3.11 or newer (tomllib); use a JSON config here" % path


def test_load_valid_toml(tmp_path):
    path = write(tmp_path / "smoke.toml",
                 '[health]\ntimeout = 5\n\n[[health.checks]]\nname = "api"\nurl = "${HOST:-localhost}"\n')
    if TOMLLIB:
        assert load(path, Secrets(), environ={}) == {
            "health": {"timeout": 5, "checks": [{"name": "api", "url": "localhost"}]}}
    else:
        assert config_error(load, path, Secrets(), environ={}) == toml_needs_311(path)


def test_load_malformed_toml(tmp_path):
    path = write(tmp_path / "smoke.toml", '[health]\nurl = "http://x"\ntimeout = \n')
    expected = "%s:3:11: invalid TOML: Invalid value" % path if TOMLLIB else toml_needs_311(path)
    assert config_error(load, path, Secrets(), environ={}) == expected


# --- ${ENV} interpolation ---------------------------------------------------------------

@pytest.mark.parametrize("text, environ, result", [
    ("${HOST}", {"HOST": "db.internal"}, "db.internal"),
    ("http://${HOST}:${PORT}/x", {"HOST": "db", "PORT": "5432"}, "http://db:5432/x"),
    ("${PORT:-8080}", {}, "8080"),
    ("${PORT:-8080}", {"PORT": "9090"}, "9090"),
    ("${PORT:-}", {}, ""),
    ("$${HOST}", {"HOST": "db"}, "${HOST}"),
    ("$${HOST} ${HOST}", {"HOST": "db"}, "${HOST} db"),
    ("costs $5, $HOME and $${HOME}", {}, "costs $5, $HOME and ${HOME}"),
    ("$HOST", {"HOST": "db"}, "$HOST"),
])
def test_interpolate_strings(text, environ, result):
    assert interpolate(text, "x", Secrets(), environ=environ) == result


def test_interpolate_leaves_other_types_alone():
    doc = {"n": 5, "on": True, "none": None, "list": [1, "${A}"]}
    assert interpolate(doc, "", Secrets(), environ={"A": "a"}) == {
        "n": 5, "on": True, "none": None, "list": [1, "a"]}


def test_empty_variable_takes_the_default_like_the_shell():
    # SUSPECTED BUG: `${VAR:-default}` uses the default in a shell when VAR is unset OR empty;
    # config.interpolate returns "" when VAR is set to "".
    assert interpolate("${PORT:-8080}", "x", Secrets(), environ={"PORT": ""}) == "8080"


def test_unset_variable_names_the_field(tmp_path):
    path = write(tmp_path / "c.json", '{"health": {"checks": [{"url": "http://${API_HOST}/"}]}}')
    assert config_error(load, path, Secrets(), environ={}) == (
        "health.checks[0].url: environment variable API_HOST is not set (give a default: ${API_HOST:-value})")


def test_unset_variable_at_the_top_level():
    assert config_error(interpolate, "${NOPE}", "", Secrets(), environ={}) == (
        "config: environment variable NOPE is not set (give a default: ${NOPE:-value})")


def test_secret_named_variables_are_secrets_others_and_defaults_are_not(tmp_path):
    path = write(tmp_path / "c.json",
                 '{"health": {"url": "https://${HOST}/?k=${KEY}", "port": "${PORT:-8080}", "tz": "${TZ}"}}')
    secrets = Secrets()
    doc = load(path, secrets, environ={"HOST": "api.internal", "KEY": "k3y-0123", "TZ": "UTC"})
    assert doc["health"] == {"url": "https://api.internal/?k=k3y-0123", "port": "8080", "tz": "UTC"}
    assert secrets.values == {"k3y-0123"}
    assert secrets.redact(doc)["health"]["url"] == "https://api.internal/?k=***"


# --- secrets ----------------------------------------------------------------------------

def test_load_collects_secret_named_fields_at_any_depth(tmp_path):
    path = write(tmp_path / "c.json", """{
      "health": {
        "token": "tok-0001",
        "checks": [{"url": "http://x", "headers": {"Authorization": "Bearer abcdef"}}],
        "db": {"password": "hunter22", "api_key": "ak-123456", "user": "admin-user"},
        "credentials": {"user": "robot-1", "list": ["one-secret"]},
        "pin": {"password": "abc"},
        "port": 8080
      }
    }""")
    secrets = Secrets()
    load(path, secrets, environ={})
    assert secrets.values == {"tok-0001", "Bearer abcdef", "hunter22", "ak-123456", "robot-1", "one-secret"}


# --- Fields -----------------------------------------------------------------------------

WHERE = "health.checks[0]"


@pytest.mark.parametrize("data, read, message", [
    ({}, lambda f: f.text("url"), "health.checks[0].url: required field is missing"),
    ({}, lambda f: f.number("timeout"), "health.checks[0].timeout: required field is missing"),
    ({}, lambda f: f.strings("expect"), "health.checks[0].expect: required field is missing"),
    ({"timeout": "ten"}, lambda f: f.number("timeout"),
     'health.checks[0].timeout: expected a number, got a string "ten"'),
    ({"timeout": True}, lambda f: f.number("timeout"),
     "health.checks[0].timeout: expected a number, got a boolean true"),
    ({"timeout": [5]}, lambda f: f.number("timeout", 5),
     "health.checks[0].timeout: expected a number, got a list [5]"),
    ({"url": 5}, lambda f: f.text("url"), "health.checks[0].url: expected a string, got a number 5"),
    ({"url": False}, lambda f: f.text("url"), "health.checks[0].url: expected a string, got a boolean false"),
    ({"url": {"a": 1}}, lambda f: f.text("url"),
     'health.checks[0].url: expected a string, got an object {"a": 1}'),
    ({"verbose": "yes"}, lambda f: f.flag("verbose", False),
     'health.checks[0].verbose: expected true or false, got a string "yes"'),
    ({"verbose": 1}, lambda f: f.flag("verbose", False),
     "health.checks[0].verbose: expected true or false, got a number 1"),
    ({"retries": True}, lambda f: f.get("retries", (int, float)),
     "health.checks[0].retries: expected a number, got a boolean true"),
    ({"expect": 5}, lambda f: f.strings("expect"),
     "health.checks[0].expect: expected a list or a string, got a number 5"),
    ({"expect": ["status == 200", 7]}, lambda f: f.strings("expect"),
     "health.checks[0].expect[1]: expected a string, got a number 7"),
    ({"retries": -1}, lambda f: f.number("retries"), "health.checks[0].retries: must be at least 0, got -1"),
    ({"timeout": "0.5"}, lambda f: f.number("timeout", minimum=1),
     "health.checks[0].timeout: must be at least 1, got 0.5"),
    ({"severity": "fatal"}, lambda f: f.choice("severity", ("critical", "warning"), "critical"),
     'health.checks[0].severity: expected one of critical, warning, got a string "fatal"'),
    ({"url": "x" * 60}, lambda f: f.number("url"),
     'health.checks[0].url: expected a number, got a string of 60 characters'),  # never a part: it may be a secret
])
def test_fields_errors_name_the_field(data, read, message):
    assert config_error(read, Fields(data, WHERE)) == message


def test_fields_null_is_shown_once():
    # SUSPECTED BUG: _shown(None) gives "null null" ("got null null").
    assert config_error(Fields({"timeout": None}, WHERE).number, "timeout") == (
        "health.checks[0].timeout: expected a number, got null")


@pytest.mark.parametrize("data, read, value", [
    ({"timeout": 2.5}, lambda f: f.number("timeout"), 2.5),
    ({"timeout": 3}, lambda f: f.number("timeout"), 3),
    ({"timeout": "5"}, lambda f: f.number("timeout"), 5.0),
    ({"timeout": " 0.25 "}, lambda f: f.number("timeout"), 0.25),
    ({}, lambda f: f.number("timeout", 10), 10),
    ({}, lambda f: f.number("timeout", None), None),
    ({"timeout": None}, lambda f: f.number("timeout", None), None),
    ({"timeout": 1}, lambda f: f.number("timeout", minimum=1), 1),
    ({"url": "http://x"}, lambda f: f.text("url"), "http://x"),
    ({}, lambda f: f.text("url", None), None),
    ({"verbose": True}, lambda f: f.flag("verbose", False), True),
    ({}, lambda f: f.flag("verbose", False), False),
    ({"expect": "status == 200"}, lambda f: f.strings("expect"), ["status == 200"]),
    ({"expect": ["a", "b"]}, lambda f: f.strings("expect"), ["a", "b"]),
    ({}, lambda f: f.strings("expect", []), []),
    ({"severity": "warning"}, lambda f: f.choice("severity", ("critical", "warning"), "critical"), "warning"),
    ({}, lambda f: f.choice("severity", ("critical", "warning"), "critical"), "critical"),
    ({"retries": 2}, lambda f: f.get("retries", (int,)), 2),
])
def test_fields_accept_good_values(data, read, value):
    got = read(Fields(data, WHERE))
    assert got == value and type(got) is type(value)


def test_fields_done_rejects_an_unknown_field_with_a_hint():
    fields = Fields({"url": "http://x", "urll": "http://y"}, WHERE)
    fields.text("url")
    fields.number("timeout", 5)
    assert config_error(fields.done) == "health.checks[0].urll: unknown field (did you mean 'url'?)"


def test_fields_done_without_a_close_match_gives_no_hint():
    fields = Fields({"url": "http://x", "zzzzzz": 1}, WHERE)
    fields.text("url")
    assert config_error(fields.done) == "health.checks[0].zzzzzz: unknown field"


def test_fields_done_allows_underscore_comments_and_read_fields():
    fields = Fields({"_comment": "why", "_": 1, "url": "http://x", "timeout": "nope"}, WHERE)
    fields.text("url")
    fields.seen.add("timeout")  # read elsewhere (a kind module): not unknown
    assert fields.done() is None


def test_fields_of_a_command_line_option_are_named_by_the_option():
    assert config_error(Fields({"timeout": "ten"}, "--url").number, "timeout") == (
        '--url: expected a number, got a string "ten"')
    fields = Fields({"url": "http://x", "urll": 1}, "--url")
    fields.text("url")
    assert config_error(fields.done) == "--url: unknown field (did you mean 'url'?)"


@pytest.mark.parametrize("data, shown", [([1], "a list"), ("x", "a string"), (None, "null"), (3, "a number")])
def test_fields_need_an_object(data, shown):
    assert config_error(Fields, data, "health") == "health: expected an object, got %s" % shown


def test_fields_from_a_loaded_file_report_paths(tmp_path):
    path = write(tmp_path / "c.json", '{"health": {"checks": [{"url": "http://x", "timeout": "${T:-ten}"}]}}')
    doc = load(path, Secrets(), environ={})
    check = Fields(doc["health"]["checks"][0], "health.checks[0]")
    assert check.text("url") == "http://x"
    assert config_error(check.number, "timeout") == 'health.checks[0].timeout: expected a number, got a string "ten"'
    doc = load(path, Secrets(), environ={"T": "2.5"})
    assert Fields(doc["health"]["checks"][0], "health.checks[0]").number("timeout") == 2.5


def test_json_wins_over_toml_where_toml_cannot_be_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke.toml").write_text("")
    (tmp_path / "smoke.json").write_text("{}")
    expected = "smoke.toml" if sys.version_info >= (3, 11) else "smoke.json"
    assert config.find(None, environ={}) == expected


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", float("inf")])
def test_infinite_numbers_are_rejected(value):
    with pytest.raises(ConfigError, match=r"health.checks\[0\].timeout: must be at least 0.001"):
        Fields({"timeout": value}, "health.checks[0]").number("timeout", 10, minimum=0.001)


# --- bad config given to smoke.py: exit 2, the field named ------------------------------

@pytest.mark.parametrize("table, message", [
    ({"kind": "tcp", "address": "127.0.0.1:1", "retry_delay": 1e308},
     "health.checks[0].retry_delay: must be between 0 and 3600, got 1e+308"),
    ({"kind": "tcp", "address": "127.0.0.1:1", "timeout": 1e308},
     "health.checks[0].timeout: must be between 0.001 and 86400, got 1e+308"),
    ({"kind": "tcp", "address": "127.0.0.1:1", "retries": 2.7}, "health.checks[0].retries: expected a whole number, got 2.7"),
    ({"kind": "tcp", "address": "127.0.0.1:1", "retries": 10 ** 30},
     "health.checks[0].retries: must be between 0 and 100, got a 31-digit number"),
    ({"kind": "http", "url": "http://exa mple.com/"}, "health.checks[0].url: a URL cannot contain spaces"),
    ({"kind": "http", "url": "http://exa_mple..com/"}, "is not a valid host name or address"),
    ({"kind": "http", "url": "http://127.0.0.1:0/"}, "health.checks[0].url: bad port"),
    ({"kind": "http", "url": "http://127.0.0.1/", "method": ""}, "health.checks[0].method: expected an HTTP method"),
    ({"kind": "http", "url": "http://127.0.0.1/", "method": "GET /x"}, "health.checks[0].method: expected an HTTP method"),
    ({"kind": "http", "url": "http://127.0.0.1/", "headers": {"Bad Name": "x"}}, "is not a valid header name"),
    ({"kind": "http", "url": "http://127.0.0.1/", "max_body": 10 ** 12}, "health.checks[0].max_body: must be between"),
    ({"kind": "http", "url": "http://127.0.0.1/", "expect": ["json.items[%s] == 1" % ("9" * 5000)]},
     'health.checks[0].expect[0]: expected [number] or ["key"] at column 11'),
    ({"kind": "log", "path": "/x", "pattern": "E", "lines": 10 ** 9, "expect": ["count == 0"]},
     "health.checks[0].lines: must be between 1 and 1e+06"),
    ({"kind": "log", "path": "/x", "pattern": "a{99999999999999999999}", "expect": ["count == 0"]},
     "health.checks[0].pattern: bad regular expression"),
    ({"kind": "process", "pattern": "(" * 3000 + ")" * 3000}, "health.checks[0].pattern: bad regular expression"),
    ({"kind": "http", "url": "http://127.0.0.1/", "expect": ["body matches a{99999999999999999999}"]},
     "health.checks[0].expect[0]: bad regular expression at column 14"),
    ({"kind": "http", "url": "http://127.0.0.1/", "expect": ["status in " + "[" * 100000 + "]" * 100000]},
     "health.checks[0].expect[0]: the value is nested too deeply"),
])
def test_bad_numbers_urls_and_methods_are_exit_2_naming_the_field(tmp_path, table, message):
    path = config_file(tmp_path, [dict(table, name="c")])
    for args in (["--validate"], []):
        done = smoke("health", "--config", path, *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and path in done.stderr and done.stdout == ""


def test_deep_nesting_in_a_config_is_exit_2(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"health": {"checks": [{"name": "c", "kind": "http", "url": "http://h/", "json": %s%s}]}}'
                    % ("[" * 5000, "]" * 5000))
    done = smoke("health", "--config", str(path))
    assert done.returncode == 2 and "nested deeper than 64 levels" in done.stderr and "Traceback" not in done.stderr
    if sys.version_info >= (3, 11):
        toml = tmp_path / "deep.toml"
        toml.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
        done = smoke("health", "--config", str(toml))
        assert done.returncode == 2 and "nested deeper than 64 levels" in done.stderr


@pytest.mark.parametrize("table, message", [
    ({"kind": "file", "path": "a\u0000b"}, "health.checks[0].path: holds a NUL character"),
    ({"kind": "log", "path": "", "pattern": "x", "expect": ["count == 0"]}, "health.checks[0].path: is empty"),
    ({"kind": "process", "pidfile": "/run/x\u0000"}, "health.checks[0].pidfile: holds a NUL"),
    ({"kind": "resources", "paths": ["/", "a\u0000"]}, "health.checks[0].paths[1]: holds a NUL"),
    ({"kind": "command", "command": ["echo", "a\u0000"]}, "health.checks[0].command[1]: holds a NUL"),
    ({"kind": "command", "command": ["true"], "cwd": "a\u0000"}, "health.checks[0].cwd: holds a NUL"),
    ({"kind": "command", "command": ["true"], "env": {"A=B": "x"}}, "health.checks[0].env.A=B: an environment"),
    ({"kind": "command", "command": ["echo", "\ud800"]}, "health.checks[0].command[1]: holds a lone surrogate"),
    ({"kind": "tcp", "address": "127.0.0.1:1", "send": "\ud800"}, "health.checks[0].send: holds a lone surrogate"),
    ({"kind": "http", "url": "http://127.0.0.1/", "body": "\ud800"}, "health.checks[0].body: holds a lone surrogate"),
    ({"kind": "http", "url": "http://127.0.0.1/", "headers": {"X-Note": "\u20ac"}}, "must be Latin-1 text"),
    ({"kind": "http", "url": "http://127.0.0.1/", "ca_file": "a\u0000"}, "health.checks[0].ca_file: holds a NUL"),
    ({"kind": "tcp", "address": "a\u0000b:80"}, "is not a valid host name or address"),
    ({"kind": "tcp", "address": "bad host:80"}, "is not a valid host name or address"),
    ({"kind": "tcp", "address": "[::1:80"}, "is not a valid host name or address"),
    ({"kind": "tcp", "address": "::1:80"}, "is not a valid host name or address"),
])
def test_values_no_program_can_take_are_exit_2_naming_the_field(tmp_path, table, message):
    path = config_file(tmp_path, [dict(table, name="c")])
    for args in (["--validate"], []):
        done = smoke("health", "--config", path, *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "internal error" not in done.stderr


def test_a_toml_date_is_a_config_error_and_a_silent_fifo_no_hang(tmp_path):
    if sys.version_info >= (3, 11):
        toml = tmp_path / "dates.toml"
        toml.write_text('[[health.checks]]\nname = "c"\nkind = "http"\nurl = "http://h/"\njson = {when = 1979-05-27}\n')
        done = smoke("health", "--config", str(toml), "--validate")
        assert done.returncode == 2 and "health.checks[0].json.when: a TOML date or time" in done.stderr
        toml.write_text('[[health.checks]]\nname = "c"\nkind = "tcp"\naddress = "h:1"\n_checked = 2026-11-23\n'
                        'timeout = "1_0"\n')
        done = smoke("health", "--config", str(toml), "--validate")  # a comment may hold a date; 1_0 is no number
        assert done.returncode == 2 and 'health.checks[0].timeout: expected a number, got a string "1_0"' in done.stderr
    fifo = tmp_path / "config.json"
    os.mkfifo(str(fifo))
    done, took = timed_run("health", "--config", str(fifo), "--deadline", "1", timeout=60)
    assert done.returncode == 2 and took < 5 and "cannot read config" in done.stderr  # --deadline bounds the wait


@pytest.mark.parametrize("table", [{"kind": "http", "url": "http://[::1/"},
                                   {"kind": "prometheus", "url": "http://127.0.0.1:9090", "query": "up", "ca_file": ""},
                                   {"kind": "prometheus", "url": "http://127.0.0.1:9090", "query": "up",
                                    "ca_file": "a\u0000b"}])
def test_malformed_urls_and_paths_are_config_errors_for_every_kind(tmp_path, table):
    path = config_file(tmp_path, [dict(table, name="c")])
    done = smoke("health", "--config", path, "--validate")
    assert done.returncode == 2 and "internal error" not in done.stderr, done.stderr


# --- config is unambiguous ---------------------------------------------------------------------

def test_a_key_given_twice_at_any_level_is_exit_2_naming_where(tmp_path):
    import json
    cases = [('{"health": {"checks": []}, "health": {"checks": []}}', "the top level: 'health' is given twice"),
             ('{"health": {"checks": [{"name": "a", "kind": "tcp", "address": "h:1", "timeout": 1, "timeout": 2}]}}',
              "health.checks[0]: 'timeout' is given twice")]
    for text, said in cases:
        path = tmp_path / "smoke.json"
        path.write_text(text)
        done = smoke("health", "--config", path, "--validate")
        assert done.returncode == 2 and said in done.stderr, done.stderr
    targets = tmp_path / "targets.json"
    targets.write_text('[{"name": "us", "name": "eu"}]')
    path.write_text(json.dumps({"deploy": {"targets": str(targets), "predict": {"kind": "http", "url": "http://h/"}}}))
    done = smoke("deploy", "--config", path, "--validate")
    assert done.returncode == 2 and "[0]: 'name' is given twice" in done.stderr and str(targets) in done.stderr
    done = smoke("deploy", "--predict-url", "http://127.0.0.1:1/", "--json", '{"seed": 1, "seed": 2}', "--validate")
    assert done.returncode == 2 and "--json: the top level: 'seed' is given twice" in done.stderr


def test_a_default_may_hold_a_variable_as_a_shell_expands_it():
    doc = {"url": "${A:-${B:-http://localhost}}/health", "name": "${A:-$${B}}", "x": "${A:-{}}"}
    secrets = Secrets()
    assert interpolate(doc, "", secrets, environ={}) == \
        {"url": "http://localhost/health", "name": "${B}", "x": "{}"}
    assert interpolate(doc, "", secrets, environ={"B": "http://b"})["url"] == "http://b/health"
    assert interpolate(doc, "", secrets, environ={"A": "http://a"})["url"] == "http://a/health"
    for text in ("${A:-${B}", "${A", "${A:-x"):
        with pytest.raises(ConfigError) as caught:
            interpolate({"f": text}, "", secrets, environ={})
        assert "f: a '${' is not closed" in str(caught.value)


@pytest.mark.parametrize("text, said", [
    ("${A-x}", "${A-...}: '-' is a shell's operator, not supported here (only ${NAME} and ${NAME:-default}): "
               "write ${A:-...}"),
    ("${A:=x}", "':=' is a shell's operator, not supported here"),
    ("${A=x}", "'=' is a shell's operator"),
    ("${A:+x}", "':+' is a shell's operator, not supported here (only ${NAME} and ${NAME:-default}): write the "
                "value itself"),
    ("${A:?x}", "':?' is a shell's operator, not supported here (only ${NAME} and ${NAME:-default}): write ${A}"),
    ("${A.b}", "${A must be followed by } or :-default"),
    ("${}", "'${' must be followed by a variable's name"),
    ("${ A}", "'${' must be followed by a variable's name"),
    ("costs ${ A", "a '${' is not closed"),
    ("${A:-${}}", "'${' must be followed by a variable's name"),  # in a default, used or not
    ("${B:-${A:-${ C}}}", "'${' must be followed by a variable's name"),
    ("${A:-x" + "${A:-" * 70 + "}" * 71, "${...} nested deeper than 64 levels"),
])
def test_every_dollar_brace_is_a_variable_or_an_error_that_says_what_is_wrong(text, said):
    """Only ${NAME} and ${NAME:-default} are replaced, and $${ is a literal ${: any other ${ is
    exit 2 saying what it is (a shell's operator, no name, not closed), set or not, never text sent."""
    for environ in ({"A": "a", "B": "b"}, {}):
        with pytest.raises(ConfigError) as caught:
            interpolate({"f": text}, "", Secrets(), environ=environ)
        assert str(caught.value).startswith("f: ") and said in str(caught.value), str(caught.value)
    assert interpolate({"f": "${A:-${B}}/$${A}"}, "", Secrets(), environ={"B": "b"}) == {"f": "b/${A}"}


def test_a_dollar_brace_that_is_no_variable_is_exit_2_at_load(tmp_path):
    path = tmp_path / "smoke.json"
    path.write_text('{"health": {"checks": [{"name": "a", "kind": "http", "url": "http://${HOST:=localhost}/"}]}}')
    for command in (["health", "--validate"], ["health"]):
        done = smoke(*command, "--config", path, env={"HOST": "h"})
        assert done.returncode == 2 and "health.checks[0].url: ${HOST:=...}: ':=' is a shell's operator" in done.stderr
        assert "write ${HOST:-...}" in done.stderr and done.stderr.count("\n") == 1


def test_a_secret_named_only_in_a_default_is_still_used(tmp_path):
    path = tmp_path / "smoke.json"
    path.write_text('{"secrets": ["TOKEN"], "health": {"checks": [{"name": "a", "kind": "http", '
                    '"url": "http://127.0.0.1:1/", "headers": {"X": "${OTHER:-${TOKEN}}"}}]}}')
    done = smoke("health", "--config", path, "--validate", env=dict(os.environ, OTHER="set", TOKEN="t0k3n-value"))
    assert done.returncode == 0, done.stderr


def test_any_file_nested_too_deep_is_exit_2_naming_it_never_a_recursion_error(tmp_path):
    import json
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    path = tmp_path / "smoke.json"
    for section in ({"deploy": {"targets": str(deep), "predict": {"kind": "http", "url": "http://h/"}}},
                    {"perf": {"baseline": str(deep), "targets": [{"name": "a", "url": "http://h/"}]}}):
        path.write_text(json.dumps(section))
        done = smoke(list(section)[0], "--config", path, "--validate")
        assert done.returncode == 2 and str(deep) in done.stderr and "nested deeper" in done.stderr, done.stderr
        assert "RecursionError" not in done.stderr and "internal error" not in done.stderr


def test_names_alike_after_unicode_normalisation_are_duplicates(tmp_path):
    import json
    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"health": {"checks": [
        {"name": "caf\u00e9", "kind": "tcp", "address": "h:1"}, {"name": "cafe\u0301", "kind": "tcp", "address": "h:2"}]}}))
    done = smoke("health", "--config", path, "--validate")
    assert done.returncode == 2 and "health.checks[1].name" in done.stderr and "used twice" in done.stderr


def test_a_variable_alone_in_a_json_body_or_vars_keeps_its_json_type(service, tmp_path):
    """"seed": "${SEED}" sends the number 42 (a model server rejects "42"); text around a
    variable, or a value that is no JSON scalar, stays a string."""
    import json as json_module
    path = tmp_path / "smoke.json"
    path.write_text(json_module.dumps({"deploy": {
        "targets": [{"name": "a", "vars": {"n": "${N:-3}", "label": "${LABEL:-007}"}}],
        "predict": {"kind": "http", "method": "POST", "url": service + "/echo",
                    "json": {"seed": "${SEED}", "temp": "${TEMP:-0.5}", "stream": "${STREAM:-false}",
                             "stop": "${STOP:-null}", "prompt": "seed ${SEED}", "word": "${WORD:-NaN}",
                             "n": "{n}", "label": "{label}"},
                    "expect": ["status == 200"]}}}))
    done = smoke("deploy", "--config", str(path), env=dict(os.environ, SEED="42"))
    assert done.returncode == 0, done.stdout
    facts = json_module.loads(done.stdout)["results"][0]["facts"]
    sent = json_module.loads(json_module.loads(facts["body"])["body"])
    assert sent == {"seed": 42, "temp": 0.5, "stream": False, "stop": None, "prompt": "seed 42", "word": "NaN",
                    "n": 3, "label": "007"}, sent


def test_a_variable_only_another_section_uses_stops_no_other_command(service, tmp_path, monkeypatch):
    """ADMIN_TOKEN unset, used only by the deploy section: health runs, history reads state_dir,
    heartbeat says it has no section; deploy (and all) are exit 2 naming the variable."""
    import json as json_module
    path = tmp_path / "smoke.json"
    path.write_text(json_module.dumps({
        "state_dir": str(tmp_path / "state"),
        "health": {"checks": [{"name": "api", "kind": "http", "url": service + "/health"}]},
        "deploy": {"predict": {"kind": "http", "url": service + "/echo",
                               "headers": {"Authorization": "Bearer ${ADMIN_TOKEN}"}}}}))
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    env = None
    assert smoke("health", "--config", str(path), env=env).returncode == 0
    assert smoke("history", "--config", str(path), env=env).returncode == 0
    done = smoke("heartbeat", "--config", str(path), env=env)
    assert done.returncode == 2 and "has no heartbeat checks" in done.stderr, done.stderr
    for command in ("deploy", "all"):
        done = smoke(command, "--config", str(path), "--validate", env=env)
        assert done.returncode == 2 and "deploy.predict.headers.Authorization: environment variable ADMIN_TOKEN " \
            "is not set" in done.stderr, done.stderr
