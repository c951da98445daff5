"""The condition language: parse, check, failures. Pure functions on real dicts."""

import pytest

from checks.expect import ConditionError, failures, parse, unmet


def explain(text, facts):
    return unmet(parse(text), facts)


# --- every operator, holding and failing ------------------------------------------------

@pytest.mark.parametrize("text, facts", [
    ("status == 200", {"status": 200}),
    ("json.status == healthy", {"json": {"status": "healthy"}}),
    ('json.status == "healthy"', {"json": {"status": "healthy"}}),
    ("status != 500", {"status": 200}),
    ("latency_ms < 200", {"latency_ms": 11.9}),
    ("latency_ms <= 200", {"latency_ms": 200}),
    ("json.agents_loaded > 14", {"json": {"agents_loaded": 15}}),
    ("json.agents_loaded >= 15", {"json": {"agents_loaded": 15}}),
    ("body contains Healthy", {"body": "I am Healthy"}),
    ("json.tags contains critical", {"json": {"tags": ["hourly", "critical"]}}),
    ("json contains status", {"json": {"status": "ok"}}),
    ("body !contains error", {"body": "all good"}),
    ("body matches ^OK\\b", {"body": "OK then"}),
    ("json.n matches ^4\\d$", {"json": {"n": 42}}),
    ("body !matches ^ERR", {"body": "OK"}),
    ("json.status exists", {"json": {"status": "ok"}}),
    ("json.gone !exists", {"json": {}}),
    ("status in [200, 204]", {"status": 204}),
    ('json.status in ["ok", "healthy"]', {"json": {"status": "healthy"}}),
])
def test_operator_holds(text, facts):
    assert explain(text, facts) is None


@pytest.mark.parametrize("text, facts, message", [
    ("status == 200", {"status": 503}, "status: expected == 200, got 503"),
    ("json.status == healthy", {"json": {"status": "degraded"}},
     'json.status: expected == "healthy", got "degraded"'),
    ("status != 500", {"status": 500}, "status: expected != 500, got 500"),
    ("latency_ms < 200", {"latency_ms": 250.5}, "latency_ms: expected < 200, got 250.5"),
    ("latency_ms <= 200", {"latency_ms": 201}, "latency_ms: expected <= 200, got 201"),
    ("json.agents_loaded > 15", {"json": {"agents_loaded": 15}},
     "json.agents_loaded: expected > 15, got 15"),
    ("json.agents_loaded >= 15", {"json": {"agents_loaded": 12}},
     "json.agents_loaded: expected >= 15, got 12"),
    ("body contains Healthy", {"body": "down"}, 'body: expected contains "Healthy", got "down"'),
    ("json.tags contains critical", {"json": {"tags": ["hourly"]}},
     'json.tags: expected contains "critical", got ["hourly"]'),
    ("body !contains error", {"body": "an error occurred"},
     'body: expected !contains "error", got "an error occurred"'),
    ("body matches ^OK", {"body": "NOT OK"}, 'body: expected matches "^OK", got "NOT OK"'),
    ("body !matches ^ERR", {"body": "ERR 5"}, 'body: expected !matches "^ERR", got "ERR 5"'),
    ("json.status exists", {"json": {}}, "json.status: missing"),
    ("json.status !exists", {"json": {"status": "ok"}},
     'json.status: expected to be absent, got "ok"'),
    ("status in [200, 204]", {"status": 500}, "status: expected in [200, 204], got 500"),
])
def test_operator_fails_with_exact_explanation(text, facts, message):
    assert explain(text, facts) == message


def test_missing_subject_fails_every_operator_but_not_exists():
    for op in ("== 1", "!= 1", "< 1", "contains x", "matches x", "exists", "in [1]"):
        assert explain("json.status " + op, {"json": {}}) == "json.status: missing"
    assert explain("json.status !exists", {"json": {}}) is None


def test_long_values_are_cut_in_explanations():
    message = explain("body == short", {"body": "x" * 200})
    assert message == 'body: expected == "short", got "' + "x" * 79 + "…"


# --- subjects ---------------------------------------------------------------------------

FACTS = {
    "status": 200,
    "header": {"content-type": "application/json"},
    "json": {
        "items": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "key with.dot": "dotted",
        "data": {"result": [{"value": [1700000000, "1"]}]},
        "status": None,
        "Mixed": 1,
        "mixed": 2,
    },
    "body": "hello",
}


@pytest.mark.parametrize("text", [
    "json.items[0].name == a",
    "json.items[-1].name == c",
    "json.items[ 1 ].name == b",
    "json.items.0.name == a",
    "json.items.-1.name == c",
    'json["key with.dot"] == dotted',
    "json.data.result[0].value[1] == 1",
    "len(json.items) == 3",
    "len(body) == 5",
    "len(json.data) == 1",
    "len(json.items) >= 3",
    "header.Content-Type contains json",
    "HEADER.CONTENT-TYPE == application/json",
    "json.Mixed == 1",          # an exact key wins over the case-insensitive fallback
    "json.mixed == 2",
    "json.status exists",       # a JSON null exists
    "json.status == null",
])
def test_subject_paths_resolve(text):
    assert explain(text, FACTS) is None


@pytest.mark.parametrize("text, message", [
    ("json.items[3].name == a", "json.items[3].name: missing"),
    ("json.items[-4].name == a", "json.items[-4].name: missing"),
    ("json.items.x == a", "json.items.x: missing"),
    ("json.nope.deeper.still == 1", "json.nope.deeper.still: missing"),
    ("status.code == 200", "status.code: missing"),        # into a number
    ("body.length == 5", "body.length: missing"),           # into a string
    ("len(json.items) == 2", "len(json.items): expected == 2, got 3"),
    ("len(status) == 3", "len(status): missing"),            # no length of a number
    ("len(json.nope) == 0", "len(json.nope): missing"),
])
def test_subject_paths_that_do_not_resolve(text, message):
    assert explain(text, FACTS) == message


def test_subject_keeps_its_written_form_in_messages():
    assert explain("  status == 201", FACTS) == "status: expected == 201, got 200"
    assert explain("len(json.items)==2", FACTS) == "len(json.items): expected == 2, got 3"


# --- values -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected_value", [
    ("x == 200", 200),
    ("x == 0.25", 0.25),
    ('x == "two words"', "two words"),
    ("x == true", True),
    ("x == false", False),
    ("x == null", None),
    ("x in [1, 2]", [1, 2]),
    ('x == {"a": 1}', {"a": 1}),
    ("x == healthy", "healthy"),
    ("x contains Prometheus Server is Healthy.", "Prometheus Server is Healthy."),
    ("x == 200 OK", "200 OK"),
    ("x == 'quoted words'", "quoted words"),
    ("x == 'it''s'", "it''s"),
    ("x == '", "'"),
])
def test_values_are_json_literals_or_bare_words(text, expected_value):
    assert parse(text).value == expected_value


def test_bare_multi_word_text_is_matched_whole():
    facts = {"body": "Prometheus Server is Healthy.\n"}
    assert explain("body contains Prometheus Server is Healthy.", facts) is None
    assert explain("body contains Prometheus Server is Sick.", facts) == (
        'body: expected contains "Prometheus Server is Sick.", got "Prometheus Server is Healthy.\\n"')


def test_single_quoted_bare_word_compares_without_quotes():
    assert explain("json.status == 'ok then'", {"json": {"status": "ok then"}}) is None


# --- numbers, versions, booleans --------------------------------------------------------

@pytest.mark.parametrize("text, fact, holds", [
    ("v >= 3.11", "3.9.18", False),
    ("v >= 3.9", "3.9.18", True),
    ("v < 3.11", "3.9.18", True),
    ("v >= 3.9.18", "3.9.18", True),
    ("v > 3.9.18", "3.9.18", False),
    ("v >= 3.10.1", "3.10.0", False),
    ("v >= 18", "v20.1.0", True),
    ("v < 18", "v20.1.0", False),
    ("v >= 12", "12.2.0", True),
    ("v > 12.2", "12.2.0", False),
    ('v >= "3.11"', "3.12.1", True),
    ("v > 0.45", "0.5", True),       # one dot and no "v": a number, not a version
    ("v < 0.45", "0.5", False),
    ("v == 1", "1", True),           # Prometheus sends sample values as strings
    ("v != 1", "1", False),
    ("v > 0.5", "0.75", True),
    ("v == 1.0", 1, True),
    ("v == 3.9", "3.9.0", True),
    ("v == 3.9", "3.9.18", False),
    ("v in [1, 2]", "2", True),
    ("v == healthy", "healthy", True),
    ("v < b", "a", True),            # text orders as text
])
def test_numbers_and_versions(text, fact, holds):
    assert (explain(text, {"v": fact}) is None) is holds


def test_version_failure_explanation():
    assert explain("version >= 3.11", {"version": "3.9.18"}) == 'version: expected >= 3.11, got "3.9.18"'
    assert explain("node >= 20.1.0", {"node": "v18.2.0"}) == 'node: expected >= 20.1.0, got "v18.2.0"'


def test_version_explanation_keeps_the_written_value():
    # SUSPECTED BUG: "3.10" is parsed as the JSON number 3.1, so the message reads
    # "expected >= 3.1" although the comparison (correctly) used 3.10.
    assert explain("version >= 3.10", {"version": "3.9.18"}) == 'version: expected >= 3.10, got "3.9.18"'


def test_version_equality_agrees_with_ordering():
    # SUSPECTED BUG: "v20.1.0" is both >= 20.1.0 and <= 20.1.0, but not == 20.1.0,
    # because a bare-word value skips the version comparison in ==.
    facts = {"node": "v20.1.0"}
    assert explain("node >= 20.1.0", facts) is None
    assert explain("node <= 20.1.0", facts) is None
    assert explain("node == 20.1.0", facts) is None


@pytest.mark.parametrize("text, fact, message", [
    ("x == 1", True, "x: expected == 1, got true"),
    ("x == true", 1, "x: expected == true, got 1"),
    ("x == true", "true", 'x: expected == true, got "true"'),
    ("x == false", 0, "x: expected == false, got 0"),
    ("x in [1]", True, "x: expected in [1], got true"),
    ("x == true", True, None),
    ("x != false", True, None),
])
def test_booleans_are_strict(text, fact, message):
    assert explain(text, {"x": fact}) == message


@pytest.mark.parametrize("text, fact, message", [
    ("x < 5", "abc", 'x: cannot order "abc" against 5'),
    ("x >= 1", None, "x: cannot order null against 1"),
    ("x > 1", [1, 2], "x: cannot order [1, 2] against 1"),
    ("x < 1", True, "x: cannot order true against 1"),
    ("x contains 5", 12345, "x: cannot look inside 12345"),
])
def test_type_mismatch_is_one_line_not_an_exception(text, fact, message):
    assert explain(text, {"x": fact}) == message


def test_matches_uses_the_pattern_as_written():
    # SUSPECTED BUG: the value `true` is parsed as JSON True and the regex becomes "True",
    # so `stdout matches true` fails on "ok: true".
    assert explain("stdout matches true", {"stdout": "ok: true"}) is None


def test_matches_applies_to_non_text_facts_as_json():
    assert explain("json matches \"status\": \"ok\"", {"json": {"status": "ok"}}) is None


# --- missing, with the reason when the facts know it ------------------------------------

def test_json_null_exists_but_missing_does_not():
    assert explain("json.status exists", {"json": {"status": None}}) is None
    assert explain("json.status !exists", {"json": {"status": None}}) == (
        "json.status: expected to be absent, got null")


def test_missing_json_explains_the_json_error():
    facts = {"status": 200, "body": "<html>", "json_error": "body is not valid JSON: Expecting value"}
    assert explain("json.status == ok", facts) == (
        "json.status: missing (body is not valid JSON: Expecting value)")
    assert explain("len(json.items) > 0", facts) == (
        "len(json.items): missing (body is not valid JSON: Expecting value)")
    # the JSON error is no reason for a non-JSON fact to be absent
    assert explain("exit_code == 0", facts) == "exit_code: missing"


def test_missing_fact_explains_the_probe_error():
    facts = {"error": "connection refused"}
    assert explain("status == 200", facts) == "status: missing (connection refused)"


# --- parse errors name the column -------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("json.status =~ ok", "unknown operator '=~' at column 13 (did you mean 'matches'?)"),
    ("status = 200", "unknown operator '=' at column 8 (did you mean '=='?)"),
    ("status === 200", "unknown operator '===' at column 8 (did you mean '=='?)"),
    ("body containsx", "unknown operator 'containsx' at column 6 (did you mean 'contains'?)"),
    ("status <=> 200", "unknown operator '<=>' at column 8 (did you mean '<='?)"),
    ("status", "expected an operator (!contains !matches !exists contains matches exists"
               " == != <= >= < > in) at column 7"),
    ("status 200", "expected an operator (!contains !matches !exists contains matches exists"
                   " == != <= >= < > in) at column 8"),
    ("status ==", "expected a value after '==' at column 10"),
    ("body contains   ", "expected a value after 'contains' at column 17"),
    ("json.x exists 1", "'exists' takes no value, found '1' at column 15"),
    ("json.x !exists yes", "'!exists' takes no value, found 'yes' at column 16"),
    ("status in 200", "'in' needs a JSON list such as [200, 204] at column 11"),
    ("status in [200", "'in' needs a JSON list such as [200, 204] at column 11"),
    ("len(json.items >= 3", "expected ')' at column 15"),
    ("== 200", "expected a fact name at column 1"),
    ("json. == 1", "expected a name after '.' at column 6"),
    ("json[x] == 1", 'expected [number] or ["key"] at column 5'),
    ("", "empty condition; expected e.g. 'status == 200'"),
    ("   ", "empty condition; expected e.g. 'status == 200'"),
])
def test_parse_errors_name_the_column(text, message):
    with pytest.raises(ConditionError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_bad_regex_names_the_column():
    with pytest.raises(ConditionError) as caught:
        parse("body matches (")
    assert str(caught.value).startswith("bad regular expression at column 14: missing )")


def test_parse_error_is_a_value_error():
    assert issubclass(ConditionError, ValueError)


def test_operators_need_no_spaces_when_symbolic():
    cond = parse("status>=200")
    assert (cond.subject, cond.path, cond.op, cond.value) == ("status", ("status",), ">=", 200)


def test_parse_keeps_the_parts():
    cond = parse('len(json.data["a.b"][0]) <= 3')
    assert cond.subject == 'len(json.data["a.b"][0])'
    assert cond.path == ("json", "data", "a.b", 0)
    assert cond.length is True
    assert (cond.op, cond.value, cond.raw) == ("<=", 3, "3")


# --- failures ---------------------------------------------------------------------------

def test_failures_returns_only_failing_explanations_in_order():
    conditions = [parse(t) for t in (
        "status == 200", "latency_ms < 100", "json.status == healthy", "json.n >= 3", "body exists")]
    facts = {"status": 200, "latency_ms": 150, "json": {"status": "healthy", "n": 1}}
    assert failures(conditions, facts) == [
        "latency_ms: expected < 100, got 150",
        "json.n: expected >= 3, got 1",
        "body: missing",
    ]
    assert failures(conditions[:1], facts) == []
    assert failures([], facts) == []


# --- never eval'ed ----------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "__import__('pathlib').Path('pwned').touch() == 1",
    "len(__import__('pathlib').Path('pwned').touch()) == 1",
    "status == __import__('pathlib').Path('pwned').touch()",
    "status == {__import__('pathlib').Path('pwned').touch()}",
    "status in [__import__('pathlib').Path('pwned').touch()]",
    "body matches (?{__import__('pathlib').Path('pwned').touch()})",
])
def test_conditions_are_never_evaluated_as_python(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        message = explain(text, {"status": 200, "body": "x"})
    except ConditionError:
        message = "rejected"
    assert message  # never holds
    assert not (tmp_path / "pwned").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_mistyped_fact_name_suggests_the_right_one():
    cond = parse("header.content-type contains json")
    assert unmet(cond, {"status": 200, "headers": {"content-type": "application/json"}}) == \
        "header.content-type: missing (no fact 'header'; did you mean 'headers'?)"


@pytest.mark.parametrize("text, facts, holds", [
    ("json.version >= 3.11", {"json": {"version": "3.9"}}, False),   # DESIGN's example: 3.9 < 3.11
    ("json.version >= 3.9", {"json": {"version": "3.10"}}, True),
    ("json.api_version == 1.2", {"json": {"api_version": "1.2.0"}}, True),
    ("json.ratio > 0.45", {"json": {"ratio": "0.5"}}, True),         # not named *version: a number
    ("len(json.version) == 3", {"json": {"version": "3.9"}}, True),
])
def test_a_fact_named_version_compares_as_a_version(text, facts, holds):
    assert (unmet(parse(text), facts) is None) is holds


@pytest.mark.parametrize("text, hint", [
    ("pass_rate < 95%", "(pass_rate < 0.95)"), ("error_rate < 1%", "(error_rate < 0.01)"),
    ("latency_ms < 2s", "(latency_ms < 2000)"), ("p95_ms < 1.5 s", "(p95_ms < 1500)"),
    ("p95_ms < 200ms", "(p95_ms < 200)"), ("uptime_s > 5min", "(uptime_s > 300)"),
    ("disk_percent < 90%", "(disk_percent < 90)"), ("free_bytes > 2GiB", "(free_bytes > 2147483648)"),
    ("json.size < 5GB", "_ms milliseconds, _s seconds"), ("latency_ms < 5GB", "_ms milliseconds, _s seconds")])
def test_a_number_with_a_unit_is_said_in_the_facts_own_unit(text, hint):
    """Stripping the unit would be wrong by 100 or 1000 (pass_rate < 95 always holds): the
    hint converts into the unit the fact's name says, or says how to find it."""
    with pytest.raises(ConditionError) as caught:
        parse(text)
    assert "is not a number: write it without a unit" in str(caught.value) and hint in str(caught.value)
