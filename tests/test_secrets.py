"""checks/secrets.py: what is secret, the forms it travels in, masking. Secrets are sent to real servers
that echo, reflect and redirect them (the fixture service's /echo and /hostile/ answers on 127.0.0.1) and
to real commands, and must never come back in any output; Secrets itself is tested in-process.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from checks import secrets
from checks.secrets import Secrets
from conftest import SMOKE, config, report_of, smoke, strict_json, timed_run


# --- never in any output, in any form --------------------------------------------------------

PASSWORD = "pässw/rd+x=1 \"quoted\""


TOKEN = "t0k3n/with+plus=and\"quote"


def outputs(done, out_file):
    return done.stdout + done.stderr + out_file.read_text()


def assert_nothing_leaks(text, *secrets):
    import base64
    from urllib.parse import quote
    for secret in secrets:
        for form in (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
                     quote(secret, safe=""), base64.b64encode(secret.encode()).decode()):
            assert form not in text, form
        for i in range(0, len(secret) - 6):  # nor any long piece of one: nothing cut short before masking
            assert secret[i:i + 7] not in text, secret[i:i + 7]


def test_basic_auth_never_leaks_as_base64_through_an_echoing_server(service, tmp_path):
    import base64
    out = tmp_path / "r.json"
    path = config(tmp_path, [{"name": "echo", "kind": "http", "url": service + "/echo",
                              "basic_auth": {"username": "smoke", "password": PASSWORD},
                              "expect": ["body contains never-there"]}])
    for fmt in ("json", "text"):
        done = smoke("health", "--config", path, "--format", fmt, "--output", str(out))
        assert done.returncode == 1
        text = outputs(done, out)
        assert_nothing_leaks(text, PASSWORD)
        assert base64.b64encode(("smoke:" + PASSWORD).encode()).decode() not in text


def test_a_bearer_token_never_leaks_url_encoded_after_a_redirect(service, tmp_path):
    out = tmp_path / "r.json"
    path = config(tmp_path, [{"name": "sso", "kind": "http", "url": service + "/hostile/leak-token",
                              "bearer_token": "${SMOKE_API_TOKEN}", "expect": ["url contains nothing"]}])
    done = smoke("health", "--config", path, "--output", str(out), env={"SMOKE_API_TOKEN": TOKEN})
    assert done.returncode == 1
    assert report_of(done)["results"][0]["facts"]["url"].endswith("/health?token=***")
    assert_nothing_leaks(outputs(done, out), TOKEN)


def test_json_escaped_and_non_ascii_secrets_never_leak_inside_a_body(service, tmp_path):
    out = tmp_path / "r.json"
    path = config(tmp_path, [{"name": "echo", "kind": "http", "url": service + "/echo", "method": "POST",
                              "headers": {"X-Note": "fine"}, "json": {"password": "${DB_PASSWORD}"},
                              "expect": ["status == 299"]}])
    done = smoke("health", "--config", path, "--output", str(out), "--format", "text",
                 env={"DB_PASSWORD": PASSWORD})
    assert done.returncode == 1
    assert_nothing_leaks(outputs(done, out), PASSWORD)


@pytest.mark.parametrize("mode", ["key", "b64-unpadded", "b64-offset1", "b64-offset2", "html", "entities", "slash",
                                  "u-escapes", "hex", "percent-all", "upper", "latin-1", "utf-16-le", "cp500",
                                  "status-line"])
def test_a_secret_reflected_in_any_encoding_never_leaks(service, tmp_path, mode):
    out = tmp_path / "r.json"
    token = "pä/ss<&>w0rd-" + "z" * 8
    path = config(tmp_path, [{"name": "reflect", "kind": "http", "url": service + "/hostile/reflect?as=" + mode,
                              "bearer_token": "${API_TOKEN}", "expect": ["status == 299"]}])
    for fmt in ("json", "text"):
        done = smoke("health", "--config", path, "--output", str(out), "--format", fmt, env={"API_TOKEN": token})
        assert done.returncode == 1, done.stderr
        assert_nothing_leaks(outputs(done, out), token)
    if mode != "status-line":  # the body as the server sent it, read as its charset says: not shown as such
        import urllib.request
        request = urllib.request.Request(service + "/hostile/reflect?as=" + mode,
                                         headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(request, timeout=10) as answer:
            sent = answer.read().decode(answer.headers.get_content_charset() or "utf-8", "replace")
        body = json.loads(out.read_text())["results"][0]["facts"]["body"]
        assert "***" in body and sent not in outputs(done, out), body


def test_a_numeric_secret_is_masked_as_a_number(service, tmp_path):
    path = config(tmp_path, [{"name": "n", "kind": "http", "url": service + "/hostile/reflect?as=number",
                              "bearer_token": "${API_TOKEN}", "expect": ["json.n == 98765432"]}])
    done = smoke("health", "--config", path, env={"API_TOKEN": "98765432"})
    assert done.returncode == 0 and "98765432" not in done.stdout  # judged on the real number, shown masked
    assert report_of(done)["results"][0]["facts"]["json"] == {"n": "***"}


def test_a_secret_cut_short_by_a_cap_shows_none_of_its_start(service, tmp_path):
    log = tmp_path / "app.log"
    token = "s3cret-token-xyz"
    log.write_text("ERROR " + "x" * 490 + token + "\n")
    path = config(tmp_path, [
        {"name": "out", "kind": "command", "command": ["printf", "%s", "xxxxx${API_TOKEN}"], "max_output": 12,
         "expect": ["exit_code == 1"]},
        {"name": "log", "kind": "log", "path": str(log), "pattern": "ERROR", "expect": ["count == 0"]}])
    done = smoke("health", "--config", path, "--format", "text", env={"API_TOKEN": token})
    assert done.returncode == 1
    assert "s3c" not in done.stdout and "xxxxx*** \u2026 (9 more bytes)" in done.stdout


def test_secrets_are_masked_in_our_own_quoting(tmp_path):
    env = {"DB_PASSWORD": "it's-a-s3cret"}
    path = config(tmp_path, [{"kind": "command", "command": ["printf", "%s", "${DB_PASSWORD}"]},
                             {"kind": "tcp", "address": "127.0.0.1:1", "send": "${DB_PASSWORD}"}])
    for args in (["--dry-run"], []):
        done = smoke("health", "--config", path, *args, env=env)
        assert "s3cret" not in done.stdout + done.stderr, args
    bad = config(tmp_path, [{"kind": "tcp", "address": "db.example:${DB_PASSWORD}"}])
    done = smoke("health", "--config", bad, env={"DB_PASSWORD": "pa'ss\"w0rd"})
    assert done.returncode == 2 and "w0rd" not in done.stderr


def test_a_secret_through_our_own_transformations_is_masked(tmp_path):
    """smoke.py upper-cases a method and writes a host name's xn-- form: a secret there is masked in those forms."""
    path = config(tmp_path, [{"kind": "http", "url": "http://127.0.0.1:1/", "method": "${API_TOKEN}"},
                             {"kind": "http", "url": "http://${DB_PASSWORD}.example/"}])
    env = {"API_TOKEN": "Zq9sekrit-VALUE-77", "DB_PASSWORD": "\u00dcn\u00efcode-p\u00e4ssw\u00f6rd"}
    for args in (["--dry-run"], ["--timeout", "1"]):
        done = smoke("health", "--config", path, *args, env=env)
        assert "ZQ9SEKRIT" not in done.stdout + done.stderr and "xn--" not in done.stdout, done.stdout


# --- secret names: the variable's last word, the field's words -------------------------------

@pytest.mark.parametrize("name, secret", [
    ("MAX_TOKENS", False), ("TOKENIZER_DIR", False), ("SECRETARY_EMAIL", False), ("CREDENTIALS_DIR_PATH", False),
    ("NGINX_URL", False), ("PWD", False), ("KEYBOARD_LAYOUT", False),
    ("MYSQL_PWD", True), ("GITHUB_PAT", True), ("REDIS_PWD", True), ("PGPASSWORD", True), ("GITHUB_TOKEN", True),
    ("AWS_SECRET_ACCESS_KEY", True), ("STRIPE_KEY", True), ("DB_PASSWORD", True), ("BASIC_AUTH", True),
    ("DB_PASSWORD_PROD", True), ("API_KEY_V2", True), ("GITHUB_TOKEN_2", True), ("SECRET_KEY_BASE", True),
    ("PUBLIC_KEY", False), ("SORT_KEY", False), ("CACHE_KEY", False), ("PRIMARY_KEY", False), ("TOKEN_FILE", False)])
def test_variable_names_are_judged_by_their_last_word(name, secret):
    from checks.secrets import secret_name
    assert secret_name(name) is secret


def test_camel_case_fields_and_env_variables_of_commands_are_secrets(service, tmp_path):
    from checks.secrets import secret_field
    assert all(secret_field(f) for f in ("accessToken", "clientSecret", "userPassword", "apiKey"))
    path = config(tmp_path, [{"name": "c", "kind": "command", "command": ["sh", "-c", "echo $PGPASSWORD"],
                              "env": {"PGPASSWORD": "${PLAIN_VALUE}"}, "expect": ["exit_code == 1"]}])
    done = smoke("health", "--config", path, env={"PLAIN_VALUE": "plain-but-a-password"})
    assert "plain-but-a-password" not in done.stdout


def test_values_under_secret_named_keys_are_never_quoted_in_a_message(tmp_path):
    flags = tmp_path / "f.json"
    flags.write_text(json.dumps({"db": {"host": "db1", "password": "p4ss-unregistered-1"},
                                 "apiToken": "tok-unregistered-2"}))
    path = config(tmp_path, [{"name": "f", "kind": "file", "path": str(flags),
                              "expect": ["json.db == {}", "json.apiToken == x", "json.db.password !exists"]}])
    for fmt in ("json", "text"):
        done = smoke("health", "--config", path, "--format", fmt)
        assert done.returncode == 1
        assert "p4ss-unregistered" not in done.stdout and "tok-unregistered" not in done.stdout


@pytest.mark.parametrize("name", ["APIToken", "JWTSecret", "DBPassword", "X-APIToken", "AWSSecretKey", "CSRFToken"])
def test_acronyms_in_camel_case_names_are_words(name):
    from checks.secrets import secret_field
    assert secret_field(name)


@pytest.mark.parametrize("name, secret", [
    ("bearer_token", True), ("X-Api-Key", True), ("db_password", True), ("Authorization", True),
    ("client_secret", True), ("aws_secret_key", True), ("set-cookie", True), ("credentials", True),
    ("max_tokens", False), ("cookie_count", False), ("tokenizer", False), ("keys", False), ("status", False),
])
def test_secret_field_names_match_at_word_boundaries(name, secret):
    assert secrets.secret_field(name) is secret


# --- derived forms: other encoders, numbers, bytes, cuts -------------------------------------

ENCODERS = r"""
import html, json, re, sys, urllib.parse
s = sys.argv[1]
print(json.dumps(s).replace("&", "\\u0026"))                               # Go's encoding/json
print(re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), json.dumps(s)))  # Jackson, .NET
print(html.escape(s).replace("&#x27;", "&#39;"))                          # Go's html/template, PHP
print(urllib.parse.quote(s, safe="!'()*~"))                               # JavaScript's encodeURIComponent
print(s.encode("utf-8").decode("cp1252", "replace"))                      # UTF-8 read as Windows-1252
"""


def test_more_encoders_forms_of_a_secret_are_masked(tmp_path):
    printer = tmp_path / "encoders.py"
    printer.write_text(ENCODERS)
    secret = "O'Bri\u00e9n&co!\u20ac-2024"
    path = config(tmp_path, [{"name": "c", "kind": "command", "command": [sys.executable, str(printer), "${API_TOKEN}"],
                              "expect": ["exit_code == 1"]}])
    done = smoke("health", "--config", path, env={"API_TOKEN": secret})
    stdout = report_of(done)["results"][0]["facts"]["stdout"]
    assert [line.strip("\"") for line in stdout.splitlines()] == ["***"] * 5, stdout


def test_numbers_holding_a_secret_are_masked(tmp_path):
    flags = tmp_path / "n.json"
    flags.write_text('{"a": 98765432.0, "b": 9.8765432e7, "c": 1987654321, "d": 5}')
    path = config(tmp_path, [{"name": "f", "kind": "file", "path": str(flags), "expect": ["json.d == 6"]},
                             {"name": "c", "kind": "command", "command": ["true", "${PIN_CODE_PWD}"]}])
    done = smoke("health", "--config", path, env={"PIN_CODE_PWD": "98765432"})
    assert report_of(done)["results"][0]["facts"]["json"] == {"a": "***", "b": "***", "c": "***", "d": 5}


def test_a_secret_of_bytes_that_are_not_utf8_is_masked_and_the_run_completes(service):
    env = {k.encode(): v.encode() for k, v in os.environ.items()}
    env[b"TOK"] = b"ab\xffcdefgh"
    started = time.monotonic()
    done = subprocess.run([sys.executable.encode(), SMOKE.encode(), b"health", b"--url", (service + "/echo").encode(),
                           b"--secret", b"TOK"], capture_output=True, env=env, timeout=60)
    assert time.monotonic() - started < 10 and done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr and strict_json(done.stdout.decode())["status"] == "pass"


def test_a_cut_inside_a_multibyte_character_still_masks_the_secrets_start(tmp_path):
    path = config(tmp_path, [{"name": "c", "kind": "command", "command": ["printf", "%s", "XXXXXXXXXX${DB_PASSWORD}"],
                              "max_output": 17, "expect": ["exit_code == 1"]}])
    done = smoke("health", "--config", path, env={"DB_PASSWORD": "pass-w\u00f6rd-long"})
    stdout = report_of(done)["results"][0]["facts"]["stdout"]
    assert stdout.startswith("XXXXXXXXXX***") and "pass" not in stdout, stdout


def test_a_long_secret_keeps_masking_fast(tmp_path):
    key = "-----BEGIN KEY-----" + "Kq9" * 560 + "-----END KEY-----"
    path = config(tmp_path, [{"name": "c%d" % i, "kind": "command", "command": ["head", "-c", "3000", "/etc/services"],
                              "env": {"TLS_KEY": "${TLS_KEY}"}, "max_output": 100} for i in range(60)])
    done, took = timed_run("health", "--config", path, env={"TLS_KEY": key})
    assert done.returncode == 0 and took < 8, took


def test_our_quoting_of_a_command_keeps_a_secret_whole(tmp_path):
    path = config(tmp_path, [{"kind": "command", "command": ["sh", "-c", "exit 3", "x", "--password=${DB_PASSWORD}"]}])
    for args in (["--dry-run"], []):
        done = smoke("health", "--config", path, *args, env={"DB_PASSWORD": "it's-a-s3cret"})
        assert "s3cret" not in done.stdout and "--password=***" in done.stdout, done.stdout


def test_a_config_error_never_shows_part_of_a_long_secret(tmp_path):
    secret = "s3cr3t-" + "x" * 60 + "-tail"
    path = config(tmp_path, [{"name": "c", "kind": "tcp", "address": "127.0.0.1:1", "timeout": "${API_TOKEN}"}])
    done = smoke("health", "--config", path, env={"API_TOKEN": secret})
    assert done.returncode == 2 and "timeout" in done.stderr
    assert_nothing_leaks(done.stderr, secret)


# --- masking is precise, not eager -----------------------------------------------------------

def test_only_secret_looking_or_marked_variables_are_masked(service, tmp_path):
    path = config(tmp_path, [{"name": "api-${SERVICE_NAME}", "kind": "http", "url": "${NGINX_URL}/echo",
                              "headers": {"X-Trace": "${TRACE_ID}", "X-Team": "${TEAM_NAME}"},
                              "expect": ["status == 299"]}], secrets=["TEAM_NAME"])
    env = {"NGINX_URL": service, "SERVICE_NAME": "checkout", "TRACE_ID": "trace-1234", "TEAM_NAME": "blue-team"}
    done = smoke("health", "--config", path, env=env)
    result = report_of(done)["results"][0]
    assert result["name"] == "api-checkout"
    assert result["facts"]["url"] == service + "/echo"
    assert result["facts"]["json"]["headers"]["x-trace"] == "trace-1234"
    assert result["facts"]["json"]["headers"]["x-team"] == "***" and "blue-team" not in done.stdout
    done = smoke("health", "--config", path, "--dry-run", env=env)
    assert service in done.stdout and "blue-team" not in done.stdout


def test_secret_named_variables_and_secret_flag_are_masked(service, tmp_path):
    path = config(tmp_path, [{"name": "c", "kind": "command", "command": ["echo", "${GITHUB_TOKEN} ${PLAIN}"],
                              "expect": ["exit_code == 1"]}])
    env = {"GITHUB_TOKEN": "ghp-abcdef123456", "PLAIN": "plain-value-99"}
    done = smoke("health", "--config", path, env=env)
    assert "ghp-abcdef123456" not in done.stdout and "plain-value-99" in done.stdout
    done = smoke("health", "--config", path, "--secret", "PLAIN", env=env)
    assert "plain-value-99" not in done.stdout and "ghp-abcdef123456" not in done.stdout


# --- Secrets.redact --------------------------------------------------------------------------

def test_redact_masks_secrets_inside_longer_strings():
    secrets = Secrets(["hunter22"])
    assert secrets.redact("login failed for password hunter22!") == "login failed for password ***!"
    assert secrets.redact("hunter22hunter22") == "******"


def test_redact_masks_the_longest_secret_first():
    assert Secrets(["abcd", "abcdefgh"]).redact("x abcdefgh y abcd") == "x *** y ***"


def test_redact_walks_nested_dicts_and_lists_without_changing_the_original():
    secrets = Secrets(["s3cr3t-v"])
    original = {"a": ["x s3cr3t-v", {"b": "s3cr3t-v"}, 5, None], "t": ("s3cr3t-v",), "n": 1.5}
    assert secrets.redact(original) == {"a": ["x ***", {"b": "***"}, 5, None], "t": ["***"], "n": 1.5}
    assert original["a"][0] == "x s3cr3t-v"


def test_redact_masks_values_of_secret_named_keys():
    data = {"Authorization": "Basic dXNlcg==", "X-Api-Key": "k1", "password": "", "my_token": 123,
            "Cookie": "a=b", "user": "bob", "nested": {"client_secret": ["x"]}}
    assert Secrets().redact(data) == {"Authorization": "***", "X-Api-Key": "***", "password": "",
                                      "my_token": "***", "Cookie": "***", "user": "bob",
                                      "nested": {"client_secret": "***"}}


def test_short_values_are_not_secrets():
    secrets = Secrets(["abc", "", "80", None, 12345, "abcd"])
    assert secrets.values == {"abcd"}
    assert secrets.redact("abc 8080 abcd") == "abc 8080 ***"
