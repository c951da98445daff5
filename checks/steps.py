"""Steps: checks run in sequence, each able to use what earlier ones found.

A step is a check table (kind, its fields, expect; until and interval to poll) plus:
    capture      {"model_id": "json.id"}, or {"job": {"from": "stdout", "regex": "job (\\S+)"}}:
                 values taken from its real facts with the condition language's paths
    always       true: runs whatever happened before it (cleanup)
    continue_on_error  true: a failure of this step does not stop the ones after it (it is still a
                 failure: severity = "warning" makes one a warning)
    repeat       N answers to the same request; identical = true: all must be equal
                 (compare = the path compared, default json, else body, else stdout)
    concurrency  N requests at once, {index} 0..N-1 in each; all must pass
and {var} in any string field takes a captured value or a built-in ({index} too). A
string that is only "{var}" takes the value's own type (a number stays a number).
A placeholder that no earlier step captures is a ConfigError at load, naming the field.
After a step that did not pass, the steps that stand on it are `skip`, except `always` ones:
by default every step stands on all before it (a sequence); a command may say otherwise
(deploy: predict, predict_async and logs stand on deploy and ready, not on each other).
"""

from __future__ import annotations

import collections
import os
import re
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from checks import CheckError, ConfigError, expect, lifecycle, runner
from checks.config import Fields
from checks.kinds import FDS_PER_PROBE, STEP_KINDS, build_check
from checks.lifecycle import Interrupted
from checks.model import Planned, Result, cut

# {name}, or a whole number added to it or taken from it ({index + 42}, {42 + index}, {n - 1}): each part
# a class of its own, bounded, so no text can make it backtrack
PLACEHOLDER = re.compile(r"\{(?:(?P<before>[0-9]{1,9}) ?\+ ?)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                         r"(?: ?(?P<op>[+-]) ?(?P<after>[0-9]{1,9}))?\}")


def names(text: str) -> List[str]:
    """The variables a text's placeholders name."""
    return [match.group("name") for match in PLACEHOLDER.finditer(text)]


def _value(match, variables: Dict[str, Any]) -> Any:
    """What a placeholder stands for: its variable's value, with its offset (a whole number then)."""
    value = variables[match.group("name")]
    if not (match.group("before") or match.group("op")):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError("%s: %s is %r, not a whole number to add to" % (match.group(), match.group("name"), value))
    offset = int(match.group("after") or 0) * (-1 if match.group("op") == "-" else 1)
    return value + int(match.group("before") or 0) + offset
MAX_REPEAT = 1000
_SAMPLE = 1  # stands for a value captured at run time when a table is validated at load (a number: {x + 1})


class Step(collections.namedtuple("Step", "name section where table captures always repeat identical compare "
                                          "concurrency needs continue_on_error after",
                                   defaults=(None,))):
    """One step as loaded: its check table (placeholders not yet filled) and what it adds.
    after: the names of the earlier steps it stands on (None: every one before it)."""

    __slots__ = ()


def load(table, where: str, section: str, name: str, known: Set[str], builtins: Dict[str, Any]) -> Step:
    """A Step from a config table; `known` (the variables captured so far and built-ins) grows
    by what this step captures. Every table is validated now, with sample values for captures."""
    if not isinstance(table, dict):
        raise ConfigError("%s: expected a table (kind, its fields, expect), got %s" % (where, type(table).__name__))
    table = dict(table)
    if isinstance(table.get("command"), str) and not table.get("shell"):  # split before it is filled: a
        from checks.kinds.command import split  # captured value is one argument, whatever spaces it has
        table["command"] = split(table["command"], where + ".command")
    extras = Fields({key: table.pop(key) for key in ("capture", "always", "repeat", "identical", "compare",
                                                  "concurrency", "continue_on_error") if key in table}, where)
    needs, filled_later = set(), []
    script = _script(table)
    if script is not None and single_quoted(script):
        raise ConfigError("%s.command: {%s} is inside single quotes, where the shell expands nothing: write it "
                          "in double quotes, \"{%s}\"" % (where, single_quoted(script)[0], single_quoted(script)[0]))
    for at, text in _strings(table, where):
        for var in names(text):
            if var not in known:
                raise ConfigError("%s: {%s} is neither captured by an earlier step nor built in (known: %s)"
                                  % (at, var, ", ".join(sorted(known)) or "none"))
            needs.add(var)
            if var not in builtins:
                filled_later.append(at)
    captures = _captures(extras, where)
    step = Step(name, section, where, table, captures, extras.flag("always", False),
                extras.integer("repeat", 1, 1, MAX_REPEAT), extras.flag("identical", False), extras.text("compare", None),
                extras.integer("concurrency", 1, 1, MAX_REPEAT), frozenset(needs), extras.flag("continue_on_error", False))
    extras.done()
    if step.compare is not None:
        try:
            expect.parse(step.compare + " exists")
        except expect.ConditionError as exc:
            raise ConfigError("%s: %s" % (extras.at("compare"), exc))
    if step.identical and step.repeat < 2 and step.concurrency < 2:
        raise ConfigError("%s: identical = true compares answers: give repeat (or concurrency) of 2 or more"
                          % extras.at("identical"))
    samples = dict({var: _SAMPLE for var in known}, index=0, **builtins)
    try:
        build_check(fill_step(table, samples), where, section, kinds=STEP_KINDS)
    except ConfigError as exc:  # unless the field it names takes a captured value, unknown until run time
        if not any(str(exc).startswith(at + ":") or str(exc).startswith(at + ".") for at in filled_later):
            raise
    known.update(captures)
    return step


def _captures(fields: Fields, where: str) -> Dict[str, Tuple[tuple, Optional[str]]]:
    """{var: (path, regex or None)}, each validated now."""
    from checks import regex

    found = {}
    for var, spec in fields.get("capture", (dict,), {}).items():
        at = "%s.capture.%s" % (where, var)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise ConfigError("%s: a variable name is letters, digits and _" % at)
        pattern = None
        if isinstance(spec, dict):
            spec_fields = Fields(spec, at)
            path, pattern = spec_fields.text("from"), spec_fields.text("regex")
            spec_fields.done()
            problem = regex.pattern_problem(pattern)
            if problem:
                raise ConfigError("%s.regex: %s" % (at, problem))
        elif isinstance(spec, str):
            path = spec
        else:
            raise ConfigError("%s: expected a fact path such as json.id, or {from, regex}" % at)
        try:
            found[var] = (expect.parse(path + " exists").path, pattern)
        except expect.ConditionError as exc:
            raise ConfigError("%s: %s" % (at, exc))
    return found


def _strings(obj: Any, where: str) -> Iterable[Tuple[str, str]]:
    """(field path, text) of every string in a table, for placeholders."""
    if isinstance(obj, str):
        yield where, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _strings(value, "%s.%s" % (where, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _strings(value, "%s[%d]" % (where, i))


def fill_step(table: Dict[str, Any], variables: Dict[str, Any], captured=frozenset(),
              trusted=None) -> Dict[str, Any]:
    """A step's table filled. In a shell script (a shell: true command, or the script of
    sh -c, bash -c ...) the shell never sees a value as code: {var} becomes "${SMOKE_VAR_var}",
    a variable of the command's environment, quoted (so neither split into words nor globbed),
    and a shell does not parse what a variable expands to (a reason with $(...) or a quote in it
    stays text). What a server answered (captured) stays data elsewhere too: in a URL's path or
    query it is one percent-encoded segment, and it never begins an argument with '-', where a
    program would read an option (ConfigError). trusted: the origins credentials may go to when
    a server names the URL (origins()); None: not checked (a plan, a load)."""
    script = _script(table)
    command = table.get("command")
    if captured and command is not None:
        _plain_in(command, variables, captured)
    if captured and isinstance(command, list):
        _no_option([word for word in command if word is not script], variables, captured)
    if script is None:
        filled = fill(table, variables)
        if captured and isinstance(table.get("url"), str):
            filled["url"] = _fill_url(table["url"], variables, captured)
            if trusted is not None and _server_chosen(table["url"], captured):
                _credentials_to(filled, filled["url"], trusted)
        return filled
    filled = fill({key: value for key, value in table.items() if key != "command"}, variables)
    env = dict(filled.get("env") or {})
    text = _in_shell(script, variables, captured, env)
    filled["command"] = text if isinstance(command, str) else [
        text if word is script else fill(word, variables) for word in command]
    if env:
        filled["env"] = env
    return filled


_SHELLS = frozenset(("sh", "bash", "dash", "zsh", "ksh", "ash", "mksh"))
# What a captured value may hold to go into a command: text no program reads as code, in any
# quoting, nesting or wrapper (env sh -c, ssh, python -c, bash arithmetic): no space, quote,
# $, `, glob, bracket, ;, |, &, <, >, (, ), #, ~, \ or newline; and no .. path segment (rm -rf
# /srv/models/{id} with ../../etc).
_PLAIN_VALUE = re.compile(r"(?!(?:.*/)?\.\.(?:/|\Z))[A-Za-z0-9._:/@%+=,^-]*\Z")


def _plain_in(command: Any, variables: Dict[str, Any], captured) -> None:
    """A captured value in a command (a word, a script, a wrapper's argument) that is not plain
    text (_PLAIN_VALUE) is a ConfigError: a shell, or a program handing it to one, could read it
    as code; where the value sits cannot be known for every program that runs its arguments."""
    for word in [command] if isinstance(command, str) else command if isinstance(command, list) else ():
        for match in PLACEHOLDER.finditer(word) if isinstance(word, str) else ():
            if match.group("name") in captured and match.group("name") in variables:
                value = _text(_value(match, variables))
                if not _PLAIN_VALUE.match(value):
                    raise ConfigError("{%s} is %r: a captured value goes into a command only as plain text (letters, "
                                      "digits and ._:/@%%+=,^-, no .. segment), which no shell reads as code" % (
                                          match.group("name"), value[:60]))


def _script(table: Dict[str, Any]) -> Optional[str]:
    """The shell script in a step's command: all of it with shell: true, or the word after -c
    (-ec, -xc ...) of a command a shell runs (["sh", "-c", "curl .../{id}"]); None for others."""
    command = table.get("command")
    if isinstance(command, str):
        return command if table.get("shell") else None
    if not (isinstance(command, list) and command and isinstance(command[0], str)
            and os.path.basename(command[0]) in _SHELLS):
        return None
    for i, word in enumerate(command[1:-1], 1):
        if not (isinstance(word, str) and word.startswith("-")) or word == "--":
            return None
        if not word.startswith("--") and "c" in word[1:] and isinstance(command[i + 1], str):
            return command[i + 1]
    return None


def _in_shell(script: str, variables: Dict[str, Any], captured, env: Dict[str, str]) -> str:
    """script with each {var} a quoted variable of env ("${SMOKE_VAR_var}"; inside double quotes
    already, ${SMOKE_VAR_var}); a captured value beginning a word with '-' is a ConfigError."""
    quoting = _quoting(script)
    given: Dict[str, str] = {}

    def variable(match) -> str:
        if match.group("name") not in variables:
            return match.group()
        value = _text(_value(match, variables))
        name = "SMOKE_VAR_%s%s" % (match.group("name"), "_%d" % len(given) if match.group() in given else "")
        given.setdefault(match.group(), name)
        env[given[match.group()]] = value
        inside = quoting.get(match.start())
        before = script[:match.start()]
        while True:  # what fills to nothing before it begins no word: {a}{b} with a empty begins with b
            empty = re.search("(?:%s)\\Z" % PLACEHOLDER.pattern, before)
            if not (empty and empty.group("name") in variables and _text(_value(empty, variables)) == ""):
                break
            before = before[:empty.start()]
        before = before[:-1] if inside and before.endswith('"') else before  # "{var}" begins a word as {var} does
        if match.group("name") in captured and value.startswith("-") and (not before or before[-1] in " \t\n;|&("):
            raise ConfigError("{%s} is %r, which the command would read as an option: a captured value never "
                              "begins an argument with '-'" % (match.group("name"), value[:40]))
        return "${%s}" % given[match.group()] if inside else '"${%s}"' % given[match.group()]

    return PLACEHOLDER.sub(variable, script)


def _quoting(script: str) -> Dict[int, bool]:
    """{where a placeholder starts: whether it is inside double quotes} of a shell script."""
    return {index: quote == '"' for index, quote in _quotes(script).items() if quote != "'"}


def _quotes(script: str) -> Dict[int, Optional[str]]:
    """{where a placeholder starts: the quote it is inside (', " or None)} of a shell script, as
    the shell pairs quotes (an apostrophe inside "..." is a letter; a backslash escapes but in '...')."""
    found: Dict[int, Optional[str]] = {}
    quote, escaped = None, False
    for index, char in enumerate(script):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif char in "'\"" and quote in (None, char):
            quote = None if quote else char
        elif char == "{" and PLACEHOLDER.match(script, index):
            found[index] = quote
    return found


def _path_at(url: str) -> int:
    """Where a URL (or its template) leaves scheme and host: its path, else its query, else its end."""
    scheme = url.find("://")
    after = [url.find(mark, scheme + 3 if scheme >= 0 else 0) for mark in "/?#"]
    return min([at for at in after if at >= 0] or [len(url)])


def _server_chosen(url: Any, captured) -> bool:
    """Whether a captured value (a server's answer) is where a URL's scheme and host are."""
    path_at = _path_at(url) if isinstance(url, str) else 0
    return any(match.group("name") in captured for match in PLACEHOLDER.finditer(url or "")
               if match.start() < path_at)


def _answered(steps: List["Step"], variables: Dict[str, Any]):
    """(the variables the steps capture: what servers answer, fill_step's care; the origins a
    step's credentials may go to when a server names its URL)."""
    captured = frozenset().union(*(step.captures for step in steps))
    return captured, origins(steps, variables, captured)


def origins(steps: List["Step"], variables: Dict[str, Any], captured) -> Set[Tuple[str, str, int]]:
    """The (scheme, host, port) of the URLs the config itself gives its steps: where a step's
    credentials may go when a server names the URL ({status_url})."""
    return {_origin(_text(fill(step.table["url"], variables))) for step in steps
            if isinstance(step.table.get("url"), str) and not _server_chosen(step.table["url"], captured)}


def _origin(url: str) -> Tuple[str, str, int]:
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(url)
        return parts.scheme, (parts.hostname or ""), parts.port or {"https": 443}.get(parts.scheme, 80)
    except ValueError:
        return "", url, 0


# Headers that say how to talk, never who is talking: any other may carry a credential (X-Auth-Key,
# Ocp-Apim-Subscription-Key are named like nothing secret).
_PLAIN_HEADERS = frozenset(("accept", "accept-encoding", "accept-language", "cache-control", "connection",
                            "content-encoding", "content-language", "content-type", "pragma", "user-agent"))


def _credentials_to(table: Dict[str, Any], url: str, trusted) -> None:
    """A step that sends credentials (basic_auth, bearer_token, any header but _PLAIN_HEADERS) to
    a URL a server chose: only to where the config's own URLs point (ConfigError otherwise), as a
    token is never sent to another host for a next page."""
    headers = table.get("headers") if isinstance(table.get("headers"), dict) else {}
    if (table.get("basic_auth") or table.get("bearer_token") or any(name.lower() not in _PLAIN_HEADERS
                                                                     for name in headers)) \
            and _origin(url) not in trusted:
        scheme, host, port = _origin(url)
        raise ConfigError("the server named %s://%s:%d for this step, where none of the config's URLs point: its "
                          "credentials are not sent there" % (scheme, "[%s]" % host if ":" in host else host, port))


def _fill_url(url: str, variables: Dict[str, Any], captured) -> str:
    """url filled, each captured value after the scheme and host one percent-encoded segment:
    {"id": "m1/../../admin?all=1"} in /models/{id} stays /models/m1%2F..%2F..%2Fadmin%3Fall%3D1,
    and a value that is all of the URL, or its start ({status_url}), is taken as the URL it is."""
    from urllib.parse import quote

    path_at = _path_at(url)

    def one(match) -> str:
        if match.group("name") not in variables:
            return match.group()
        text = _text(_value(match, variables))
        if match.start() < path_at or match.group("name") not in captured:
            return text
        return {".": "%2E", "..": "%2E%2E"}.get(text) or quote(text, safe="")
    whole = PLACEHOLDER.fullmatch(url)
    return fill(url, variables) if whole else PLACEHOLDER.sub(one, url)


def _no_option(words: List[Any], variables: Dict[str, Any], captured) -> None:
    """An argument that, filled, begins with a '-' a captured value put there (a negative number
    too: kill -9 {pid} with -1 is every process; {a}{b} with a empty): the program would read
    what a server chose as an option (--delete-all, -o/etc/x)."""
    for word in words:
        if not isinstance(word, str) or word.startswith("-"):
            continue
        names = [match.group("name") for match in PLACEHOLDER.finditer(word)]
        if set(names) & set(captured) and _text(fill(word, variables)).startswith("-"):
            name = next(name for name in names if name in captured)
            raise ConfigError("{%s} is %r, which the command would read as an option: a captured value never "
                              "begins an argument with '-'" % (name, _text(variables.get(name, ""))[:40]))


def single_quoted(command: str) -> List[str]:
    """The placeholders of a shell command that sit inside single quotes, where no variable
    is expanded: {var} there would be the text ${SMOKE_VAR_var}, not its value (an apostrophe
    inside double quotes, "can't", opens none)."""
    return [PLACEHOLDER.match(command, index).group("name") for index, quote in _quotes(command).items()
            if quote == "'"]


def fill(obj: Any, variables: Dict[str, Any]) -> Any:
    """obj (a table, a list, a string) with every {var} replaced; a string that is only "{var}"
    becomes the value itself."""
    if isinstance(obj, str):
        whole = PLACEHOLDER.fullmatch(obj)
        if whole and whole.group("name") in variables:
            return _value(whole, variables)
        return PLACEHOLDER.sub(lambda m: _text(_value(m, variables)) if m.group("name") in variables else m.group(),
                               obj)
    if isinstance(obj, dict):
        return {key: fill(value, variables) for key, value in obj.items()}
    if isinstance(obj, list):
        return [fill(value, variables) for value in obj]
    return obj


def _text(value: Any) -> str:
    """A value inside a longer string: text as it is, anything else as JSON ([1, 2], true)."""
    if isinstance(value, str):
        return value
    import json
    return json.dumps(value)


def plan(steps: List[Step], variables: Dict[str, Any], prefix: str = "") -> List[Planned]:
    """What --dry-run shows: each step with its built-ins filled, captures still as {var};
    each needs the steps before it, so --only predict deploys first (and cleans up)."""
    planned, earlier = [], []
    for step in steps:
        needs = tuple(prefix + name for name in (earlier if step.after is None else
                                                 [n for n in earlier if n in step.after]))
        if not step.always:
            earlier.append(step.name)
        table = fill_step(step.table, dict(variables, index=0))
        options = " ".join(option for option in (
            "always" if step.always else "", "repeat=%d" % step.repeat if step.repeat > 1 else "",
            "identical" if step.identical else "", "concurrency=%d" % step.concurrency if step.concurrency > 1 else "",
            "until=[%s] timeout=%ss" % (", ".join(map(str, table.get("until", []))), table.get("timeout", 10))
            if table.get("until") else "") if option)
        try:  # the kind's own account of what it probes; captures still show as {var}
            check = build_check(table, step.where, step.section, kinds=STEP_KINDS)
            target, conditions = check.target, tuple(c.text for c in check.expect)
        except ConfigError:  # a field that takes a captured value is not valid as {var}
            target = str(table.get("url") or table.get("command") or table.get("path") or table.get("kind"))
            conditions = tuple(table.get("expect", ()))
        planned.append(Planned(prefix + step.name, step.section, str(table.get("kind")), target, conditions, (),
                               "normal", options, needs, step.always))
    return planned


def run(steps: List[Step], ctx: runner.RunContext, variables: Dict[str, Any], prefix: str = "",
        keep_on_failure: bool = False, ends: Optional[float] = None) -> Tuple[List[Result], Dict[str, Any]]:
    """Run steps in order: (their results, the variables captured). On SIGINT/SIGTERM/SIGHUP
    the `always` steps still run, shielded from further signals, then Interrupted is raised
    again with every result; a step that captures what they need is let finish first.
    keep_on_failure: `always` steps are skipped after a failure (not after an interrupt).
    ends: the run's deadline (monotonic), shared by a sequence."""
    results: List[Result] = []
    variables = dict(variables)
    blocked: Dict[str, str] = {}  # steps that did not pass (and those skipped for it): what stands on them waits
    earlier: List[str] = []
    interrupted: Optional[Interrupted] = None
    if ends is None and ctx.deadline_s:
        ends = time.monotonic() + ctx.deadline_s
    spawned: List[Tuple[str, dict]] = []  # (step name, its facts): servers this sequence started
    scope = ctx.cleanup.scope() if ctx.cleanup is not None else None  # they are stopped when it ends
    ctx = ctx._replace(give_up=lambda: _exited(spawned), cleanup=scope or ctx.cleanup)
    # what cleanup needs to know (the id of what a step made): a signal waits for the step that
    # captures it, or the thing made in the moment before the signal could never be removed
    needed_by_cleanup = set().union(*(step.needs for step in steps if step.always))
    answered = _answered(steps, variables)  # (captured, trusted): _run_one's care of what servers answered
    for step in steps:
        name = prefix + step.name
        cancelled = ctx.cancel is not None and ctx.cancel.is_set()
        stands_on = [n for n in (earlier if step.after is None else step.after) if n in blocked]
        if not step.always:
            earlier.append(step.name)
        if (stands_on or interrupted or cancelled) and not step.always:
            why = "step %s did not pass" % blocked[stands_on[0]] if stands_on else "interrupted"
            results.append(_skip(step, name, "skipped: %s" % why))
            blocked[step.name] = blocked[stands_on[0]] if stands_on else name
            continue
        if ends is not None and time.monotonic() >= ends and not step.always:
            results.append(_skip(step, name, "deadline exceeded (%s): not started" % ctx.deadline_flag)
                           ._replace(status="fail"))
            blocked[step.name] = name
            continue
        if step.always and blocked and keep_on_failure and not (interrupted or cancelled):
            results.append(_skip(step, name, "NOT CLEANED UP (--keep-on-failure): left for inspection: %s"
                                 % known(step, variables))._replace(status="warn"))
            continue
        missing = sorted(var for var in step.needs if var not in variables and var != "index")
        if missing and step.always:  # a cleanup that cannot run: what was made may still be there
            results.append(_skip(step, name, "NOT CLEANED UP: needs {%s}, which no step captured; %s may be left "
                                             "behind" % (missing[0], known(step, variables) or "what it made"))
                           ._replace(status="fail"))
            continue
        if missing:
            results.append(_skip(step, name, "skipped: needs {%s}, which no step captured" % missing[0]))
            blocked[step.name] = name
            continue
        left = None if ends is None or step.always else max(0.001, ends - time.monotonic())
        # cleanup after a cancel must still run: it gets no cancel of its own
        step_ctx = ctx._replace(deadline_s=left, cancel=None if step.always else ctx.cancel)
        try:
            if step.always or needed_by_cleanup & set(step.captures):
                result, late = lifecycle.shielded(lambda: _run_one(step, name, step_ctx, variables, spawned, *answered))
                interrupted = interrupted or late
            else:
                result = _run_one(step, name, step_ctx, variables, spawned, *answered)
        except Interrupted as exc:
            interrupted = exc
            result = exc.results[0] if exc.results else _skip(step, name, "interrupted")
            if result.status == "skip":  # it had started: what it did before the signal may stand
                result = result._replace(status="error", message="%s while it ran: it may have done part of its "
                                                                  "work" % result.message)
        if step.always and result.status in ("fail", "error"):  # say what it was to remove
            result = result._replace(message="%s; left behind: %s" % (result.message, known(step, variables)))
        elif step.continue_on_error and result.status in ("fail", "error"):
            result = result._replace(message="%s (continue_on_error: the steps after it run)" % result.message)
        results.append(result)
        if result.status not in ("pass", "warn") and not step.always and not step.continue_on_error:
            blocked[step.name] = name
    if scope is not None:
        stops, late = lifecycle.shielded(lambda: _stopped(scope, spawned, prefix, steps[0].section if steps else ""))
        results += stops
        interrupted = interrupted or late
    if interrupted:
        raise interrupted.carrying(results) from None
    return results, variables


def _stopped(scope, spawned: List[Tuple[str, dict]], prefix: str, section: str) -> List[Result]:
    """Stop what the sequence started (its spawned servers), each a result saying how: by
    SIGTERM (pass), or killed when it would not stop (warn), or left behind (fail)."""
    by_pid = {facts.get("pid"): name for name, facts in spawned}
    out = []
    for what, said, why, seconds in scope.run():
        pid, how = said if isinstance(said, tuple) else (None, said)
        step = by_pid.get(pid)  # the step that started it, by name
        name = prefix + "stop " + (step[len(prefix):] if step else what)
        status = "fail" if why else "warn" if how and "SIGKILL" in how else "pass"
        out.append(Result(name, section, "spawn", status, why and "left behind: %s (%s)" % (what, why) or how or "",
                          seconds * 1000, 1, target=what))
    return out


def known(step: Step, variables: Dict[str, Any]) -> str:
    """The values a step's placeholders take (name=..., model_id=...), and the run's {name}."""
    names = sorted(var for var in step.needs | {"name"} if var in variables and var != "index")
    return ", ".join("%s=%s" % (var, cut(str(variables[var]), 100)) for var in names)


def _skip(step: Step, name: str, message: str) -> Result:
    return Result(name, step.section, str(step.table.get("kind", "")), "skip", message)


def _exited(spawned: List[Tuple[str, dict]]) -> Optional[str]:
    """Why waiting for a server we started is pointless: it has exited (its log's end said)."""
    from checks import procfs
    from checks.kinds import spawn

    for name, facts in spawned:
        if not procfs.alive(facts["pid"]):
            return "the process that step %s started (pid %d) has exited; its log ends: %s" % (
                name, facts["pid"], spawn.tail(facts["log"]))
    return None


def _run_one(step: Step, name: str, ctx: runner.RunContext, variables: Dict[str, Any],
             spawned: List[Tuple[str, dict]], captured: frozenset = frozenset(), trusted=None) -> Result:
    count = max(step.repeat, step.concurrency)
    try:
        checks = [build_check(dict(fill_step(step.table, dict(variables, index=i), captured, trusted), name=name),
                              step.where, step.section, kinds=STEP_KINDS) for i in range(count)]
    except ConfigError as exc:  # a captured value that does not fit the field (a URL that is none)
        return Result(name, step.section, str(step.table.get("kind", "")), "error",
                      ctx.redact("with the captured values filled in: %s" % exc))
    if step.concurrency > 1:  # "at once" is what the step proves: fewer at once would prove nothing
        each = FDS_PER_PROBE.get(str(step.table.get("kind")), runner.FDS_PER_CHECK)
        fits, limit = runner.fd_limited(step.concurrency, each)
        if limit:
            return Result(name, step.section, str(step.table.get("kind", "")), "error",
                          "concurrency %d needs about %d open files; this process may open only %d (ulimit -n): "
                          "raise the limit, or lower concurrency" % (step.concurrency, step.concurrency * each, limit))
    facts = [{} for _ in checks]
    started = time.monotonic()
    results = runner.run_checks(checks, ctx._replace(concurrency=step.concurrency, on_result=None), facts,
                                exact=step.concurrency > 1)
    wall_ms = (time.monotonic() - started) * 1000
    result = results[0] if count == 1 else _combined(step, name, results, facts, wall_ms, ctx)
    if result.status == "pass" and step.table.get("kind") == "spawn":
        spawned.append((name, facts[0]))
    if step.captures and result.status == "pass":
        result = _capture(step, result, facts[0], variables, ctx)
    elif step.captures and facts[0]:  # failed, but what it made may need cleaning up: keep what can be had
        _capture(step, result, facts[0], variables, ctx)
    if ctx.on_result:
        ctx.on_result(result)
    return result


def _combined(step: Step, name: str, results: List[Result], facts: List[dict], wall_ms: float,
              ctx: runner.RunContext) -> Result:
    """One result for N answers: each one's status and latency, and whether they overlapped."""
    latencies = [round(r.duration_ms, 1) for r in results]
    summary = {"requests": len(results), "passed": sum(r.status == "pass" for r in results),
               "latencies_ms": latencies, "wall_ms": round(wall_ms, 1)}
    if step.concurrency > 1:
        summary["overlapped"] = wall_ms < sum(latencies) * 0.9
    first = results[0]
    bad = next((r for r in results if r.status != "pass"), None)
    status, message = (bad.status, "request %d of %d: %s" % (results.index(bad) + 1, len(results), bad.message)) \
        if bad else ("pass", "")
    if not bad and step.identical:
        difference = _first_difference(step.compare, facts)
        if difference:
            status, message = "fail", ctx.redact(difference)
    shown = dict(first.facts, **summary)
    return first._replace(name=name, status=status, message=message, duration_ms=wall_ms, attempts=len(results),
                          facts=shown)


def _first_difference(compare: Optional[str], facts: List[dict]) -> Optional[str]:
    """"answer 3 differs from answer 1 at json.choices[0].text: ..." or None."""
    path = expect.parse(compare + " exists").path if compare else next(
        ((key,) for key in ("json", "body", "stdout") if key in facts[0]), ("body",))
    values = [expect.resolve(f, path) for f in facts]
    if values[0] is expect.MISSING:  # a typo in compare would make every answer "equal"
        return "not comparable: %s is missing in answer 1" % ".".join(str(p) for p in path)
    for i, value in enumerate(values[1:], 2):
        if value != values[0]:
            where, a, b = _diff(values[0], value, ".".join(str(p) for p in path))
            return "not identical: answer %d differs from answer 1 at %s: %s != %s" % (
                i, where, cut(repr(b), 80), cut(repr(a), 80))
    return None


def _diff(a: Any, b: Any, where: str) -> Tuple[str, Any, Any]:
    """The first path where two JSON values differ, and the two values there."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key, expect.MISSING) != b.get(key, expect.MISSING):
                return _diff(a.get(key), b.get(key), "%s.%s" % (where, key))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _diff(x, y, "%s[%d]" % (where, i))
    return where, a, b


def _capture(step: Step, result: Result, facts: dict, variables: Dict[str, Any], ctx: runner.RunContext) -> Result:
    """Take the step's captures from its real facts; one that is missing fails the step."""
    from checks import regex

    for var, (path, pattern) in step.captures.items():
        value = expect.resolve(facts, path)
        shown = ".".join(str(p) for p in path)
        if value is expect.MISSING or value is None:
            return result._replace(status="fail", message="capture %s: %s is missing" % (var, shown))
        if pattern:
            try:
                budget = min(5.0, ctx.deadline_s) if ctx.deadline_s else 5.0  # never past --deadline
                spans = regex.search(pattern, value if isinstance(value, str) else str(value),
                                     time.monotonic() + budget)
            except CheckError as exc:
                return result._replace(status="error", message="capture %s: %s" % (var, exc))
            if spans is None:
                return result._replace(status="fail", message=ctx.redact("capture %s: %s does not match %r"
                                                                         % (var, shown, pattern)))
            start, end = spans[1] if len(spans) > 1 else spans[0]
            value = str(value)[start:end]
        variables[var] = value
    return result._replace(facts=dict(result.facts, captured=sorted(step.captures)))
