"""The condition language: `SUBJECT OP [VALUE]`, parsed (never eval'ed) and self-explaining.

    json.status == healthy        latency_ms < 200        len(json.items) >= 3
    status in [200, 204]          body contains Healthy   version >= 3.11

A condition is checked against a probe's facts and returns None when it holds,
or one line that says what was expected and what was seen.
"""

from __future__ import annotations

import collections
import functools
import json
import re
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Callable, List, Optional, Tuple

from checks.model import cut, reportable
from checks.secrets import MASK, secret_field

# Longest first, so `<=` is not read as `<` and `!contains` not as `contains`.
OPERATORS = ("!contains", "!matches", "!exists", "contains", "matches", "exists",
             "==", "!=", "<=", ">=", "<", ">", "in")
_WORD_OPS = {"contains", "!contains", "matches", "!matches", "exists", "!exists", "in"}
_NO_VALUE = {"exists", "!exists"}
_NAME = re.compile(r"[\w-]+")
# Pattern strings below are compiled on first use, by re's cache: most conditions need none of them.
_INDEX = r'\[\s*(-?\d{1,18}|"(?:[^"\\]|\\.)*")\s*\]'
_OP_LIKE = r"[!=<>~]+|[A-Za-z!]+"
# What other languages spell an operator, and ours.
_MEANT = {"=": "==", "===": "==", "eq": "==", "is": "==", "!==": "!=", "<>": "!=", "ne": "!=", "=<": "<=",
          "=>": ">=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "=~": "matches", "~": "matches",
          "~=": "matches", "!~": "!matches", "match": "matches", "has": "contains", "includes": "contains",
          "contain": "contains", "exist": "exists", "not": "!=", "!in": "!contains"}
# A string fact is a version when it has two or more dots or a leading "v" ("3.9.18",
# "v20.1"), or when the fact is named *version ("3.9" in json.version). Other one-dot
# strings ("0.5") stay numbers.
_DOTTED = r"v?(\d+(?:\.\d+)*)"
_MAX_VERSION = 200  # characters of a dotted number read as a version
_EXCERPT = 80
_UNIT = r"[0-9]+(?:\.[0-9]+)?\s*[A-Za-z%\u00b5]+\Z"  # 200ms, 95%, 1.5 GB: a number with a unit (compiled if used)
_DEFAULT_S = 10.0  # how long a regular expression may run when no deadline is given


def _same(value: Any) -> Any:
    return value


def _masked(value: Any) -> Any:
    return MASK


class ConditionError(ValueError):
    """A condition that cannot be parsed; the message names the column."""


class Condition(collections.namedtuple("Condition", "text subject path length op value raw", defaults=(None, ""))):
    """One parsed condition: subject (as written, for messages), path (keys and list
    indexes), length (the subject is len(...)), op, value, raw (the value as written,
    for version comparison)."""

    __slots__ = ()


class _Missing:
    """Marks a subject absent from the facts (distinct from a JSON null)."""


MISSING = _Missing()


def parse(text: str) -> Condition:
    """Parse one condition or raise ConditionError naming the column. Conditions are
    immutable, so each text is parsed once: 10 000 checks repeat the same few."""
    if not isinstance(text, str):
        raise ConditionError("empty condition; expected e.g. 'status == 200'")
    return _parse(text)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Condition:
    if not text.strip():
        raise ConditionError("empty condition; expected e.g. 'status == 200'")
    pos = len(text) - len(text.lstrip())
    length = text.startswith("len(", pos)
    if length:
        pos += 4
    path, end = _parse_path(text, pos)
    subject_end = end
    if length:
        if not text.startswith(")", end):
            raise ConditionError("expected ')' at column %d" % (end + 1))
        end += 1
        subject_end = end
    subject = text[len(text) - len(text.lstrip()):subject_end]
    pos = _skip_space(text, end)
    op = _parse_operator(text, pos)
    pos = _skip_space(text, pos + len(op))
    raw = text[pos:].strip()
    if op in _NO_VALUE:
        if raw:
            raise ConditionError("'%s' takes no value, found %r at column %d" % (op, raw, pos + 1))
        return Condition(text, subject, path, length, op)
    if not raw:
        raise ConditionError("expected a value after '%s' at column %d" % (op, pos + 1))
    value = _parse_value(raw)
    if op in ("<", "<=", ">", ">=") and isinstance(value, str) and re.match(_UNIT, value):
        raise ConditionError("%r is not a number: %s" % (value, _without_unit(subject, op, value)))
    if op == "in" and not isinstance(value, list):
        raise ConditionError("'in' needs a JSON list such as [200, 204] at column %d" % (pos + 1))
    if op in ("matches", "!matches"):
        from checks.regex import pattern_problem

        problem = pattern_problem(_pattern(value, raw))
        if problem:
            raise ConditionError("bad regular expression at column %d: %s" % (pos + 1, problem))
    return Condition(text, subject, path, length, op, value, raw)


# A unit as written after a number -> (what it measures, how many of that measure's base unit).
_UNITS = {"ms": ("time", 0.001), "s": ("time", 1), "sec": ("time", 1), "m": ("time", 60), "min": ("time", 60),
          "h": ("time", 3600), "us": ("time", 1e-6), "\u00b5s": ("time", 1e-6), "%": ("share", 0.01),
          "b": ("size", 1), "bytes": ("size", 1), "kb": ("size", 1e3), "mb": ("size", 1e6), "gb": ("size", 1e9),
          "kib": ("size", 1024), "mib": ("size", 1 << 20), "gib": ("size", 1 << 30)}
# A fact's name -> (what it measures, how many of the base unit its numbers are).
_FACT_UNITS = (("_ms", ("time", 0.001)), ("_s", ("time", 1)), ("_bytes", ("size", 1)), ("_percent", ("share", 0.01)),
               ("rate", ("share", 1)), ("ratio", ("share", 1)))


def _without_unit(subject: str, op: str, value: str) -> str:
    """How to write value in the unit the fact is in: 95% of pass_rate is 0.95, 2s of
    latency_ms is 2000; where the fact's unit is not known, how to find it. Stripping the
    unit (pass_rate < 95) would pass or fail every run."""
    number = re.match(r"[0-9]+(?:\.[0-9]+)?", value).group()
    unit = _UNITS.get(value[len(number):].strip().lower())
    fact = next((measure for suffix, measure in _FACT_UNITS if subject.endswith(suffix)), None)
    if unit and fact and unit[0] == fact[0]:
        return "write it without a unit, in %s's own (%s %s %s)" % (subject, subject, op,
                                                                   "%.12g" % (float(number) * unit[1] / fact[1]))
    return ("write it without a unit, in the unit %s is in: a fact's name says it (_ms milliseconds, _s seconds, "
            "_bytes bytes, _percent percent, a rate or ratio a fraction such as 0.95)" % subject)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _parse_path(text: str, pos: int) -> Tuple[Tuple[Any, ...], int]:
    match = _NAME.match(text, pos)
    if not match:
        raise ConditionError("expected a fact name at column %d" % (pos + 1))
    parts: List[Any] = [match.group()]
    pos = match.end()
    while pos < len(text):
        if text[pos] == ".":
            match = _NAME.match(text, pos + 1)
            if not match:
                raise ConditionError("expected a name after '.' at column %d" % (pos + 2))
            parts.append(match.group())
        elif text[pos] == "[":
            match = re.compile(_INDEX).match(text, pos)
            if not match:
                raise ConditionError("expected [number] or [\"key\"] at column %d" % (pos + 1))
            try:
                parts.append(json.loads(match.group(1)))
            except ValueError as exc:
                raise ConditionError("bad key at column %d: %s" % (pos + 2, exc))
        else:
            break
        pos = match.end()
    return tuple(parts), pos


def _parse_operator(text: str, pos: int) -> str:
    for op in OPERATORS:
        if text.startswith(op, pos):
            after = pos + len(op)
            word_ok = op not in _WORD_OPS or after == len(text) or text[after].isspace()
            symbol_ok = op in _WORD_OPS or after == len(text) or text[after] not in "=<>!~"
            if word_ok and symbol_ok:
                return op
    found = re.compile(_OP_LIKE).match(text, pos)
    if pos >= len(text) or not found:
        raise ConditionError("expected an operator (%s) at column %d" % (" ".join(OPERATORS), pos + 1))
    word, following = found.group().lower(), text[found.end():].split(None, 1)[:1]
    hint = "!" + following[0] if word == "not" and following and following[0] in _WORD_OPS else _MEANT.get(word)
    if hint is None:
        import difflib  # only on this error path
        close = difflib.get_close_matches(found.group(), OPERATORS, n=1, cutoff=0.7)
        hint = close[0] if close else None
    raise ConditionError("unknown operator '%s' at column %d%s" % (found.group(), pos + 1,
                                                                  " (did you mean '%s'?)" % hint if hint else ""))


def _parse_value(raw: str) -> Any:
    """A JSON literal, else a bare word (one pair of single quotes is dropped)."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ConditionError("the value is nested too deeply")
    except ValueError:
        if len(raw) >= 2 and raw[0] == raw[-1] == "'":
            return raw[1:-1]
        return raw


def resolve(facts: Any, path: Tuple[Any, ...]) -> Any:
    """Walk a path into nested facts; MISSING when any step is absent."""
    current = facts
    for part in path:
        if isinstance(current, dict):
            if part in current:
                current = current[part]
                continue
            folded = {str(k).lower(): v for k, v in current.items()}
            if str(part).lower() not in folded:
                return MISSING
            current = folded[str(part).lower()]
        elif isinstance(current, list):
            index = part if isinstance(part, int) else _int_or_none(part)
            if index is None or not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def _int_or_none(text: Any) -> Optional[int]:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def observed(cond: Condition, facts: Any) -> Any:
    """What a condition is about, as the facts have it: its path resolved, len() taken;
    MISSING when the facts do not have it."""
    seen = resolve(facts, cond.path)
    if seen is not MISSING and cond.length:
        seen = len(seen) if isinstance(seen, (str, list, dict)) else MISSING
    return seen


def unmet(cond: Condition, facts: dict, deadline: Optional[float] = None,
          redact: Callable[[Any], Any] = _same) -> Optional[str]:
    """None when the condition holds, else a one-line explanation.

    A regular expression gives up at `deadline` (regex.RegexTimeout). `redact` (a
    Secrets.redact) masks the quoted value before it is cut short, so an excerpt never
    ends inside a secret; a value found under a secret-named key is never quoted.
    """
    seen = observed(cond, facts)
    if any(isinstance(part, str) and secret_field(part) for part in cond.path):
        redact = _masked
    if seen is MISSING:
        if cond.op == "!exists":
            return None
        return "%s: missing%s" % (cond.subject, _why_missing(cond, facts))
    if cond.op == "!exists":
        return "%s: expected to be absent, got %s" % (cond.subject, _show(seen, redact))
    try:
        holds = _holds(cond, seen, deadline)
    except TypeError as exc:
        return "%s: %s" % (cond.subject, exc)
    if holds:
        return None
    return "%s: expected %s, got %s" % (cond.subject, _expected(cond), _show(seen, redact))


def failures(conditions: List[Condition], facts: dict, deadline: Optional[float] = None,
             redact: Callable[[Any], Any] = _same) -> List[str]:
    deadline = deadline or time.monotonic() + _DEFAULT_S
    return [msg for msg in (unmet(c, facts, deadline, redact) for c in conditions) if msg]


def _why_missing(cond: Condition, facts: dict) -> str:
    root = cond.path[0]
    if facts.get("no_data"):  # an empty answer explains any missing fact better than a spelling hint
        return " (%s)" % facts["no_data"]
    if isinstance(facts, dict) and root not in facts and not facts.get("error"):
        import difflib  # only on this failure path
        close = difflib.get_close_matches(str(root), [str(k) for k in facts], n=1)
        if close:
            return " (no fact %r; did you mean %r?)" % (root, close[0])
    if root == "json" and facts.get("json_error"):
        return " (%s)" % facts["json_error"]
    if facts.get("error"):
        return " (%s)" % facts["error"]
    return ""


def _holds(cond: Condition, seen: Any, deadline: Optional[float]) -> bool:
    op, value = cond.op, cond.value
    if op == "exists":
        return True
    if op in ("==", "!="):
        return _equal(seen, value, cond.raw, _named_version(cond)) == (op == "==")
    if op == "in":
        return any(_equal(seen, item, json.dumps(item)) for item in value)
    if op in ("contains", "!contains"):
        return _contains(seen, value) == (op == "contains")
    if op in ("matches", "!matches"):
        from checks import regex  # its helper process starts only if a pattern needs one

        text = seen if isinstance(seen, str) else _dumps(seen)
        found = regex.search(_pattern(value, cond.raw), text, deadline or time.monotonic() + _DEFAULT_S)
        return (found is not None) == (op == "matches")
    left, right = _ordered(seen, value, cond.raw, _named_version(cond))
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _pattern(value: Any, raw: str) -> str:
    """A regex as written: `matches true` means the text "true", not Python's True."""
    return value if isinstance(value, str) else raw


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _named_version(cond: Condition) -> bool:
    return not cond.length and str(cond.path[-1]).lower().endswith("version")


def _dotted(text: str) -> Optional[Tuple[int, ...]]:
    """The leading dotted number of text ("v3.9.18-rc1" -> (3, 9, 18)), or None."""
    match = re.match(_DOTTED, text.strip())
    if not match or len(match.group(1)) > _MAX_VERSION:  # 5000 digits: not a version, and int() refuses
        return None
    return tuple(int(p) for p in match.group(1).split("."))


def _whole_version(text: str) -> bool:
    return bool(re.fullmatch(_DOTTED, text.strip()))


def _version(text: Any, named: bool = False) -> Optional[Tuple[int, ...]]:
    """text as a version, if the rule above makes it one."""
    parts = _dotted(text) if isinstance(text, str) else None
    if parts and (len(parts) >= 3 or text.strip().startswith("v") or (named and len(parts) >= 2)):
        return parts
    return None


def _as_version(raw: str) -> Optional[Tuple[int, ...]]:
    return _dotted(raw.strip().strip("\"'"))


def _padded(a: Tuple[int, ...], b: Tuple[int, ...]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def _ordered(seen: Any, value: Any, raw: str, named: bool = False) -> Tuple[Any, Any]:
    """The pair to order: versions as versions, numbers as numbers, text as text."""
    seen_version, value_version = _version(seen, named), _as_version(raw)
    if seen_version is not None and value_version is not None:
        return _padded(seen_version, value_version)
    left, right = _number(seen), _number(value)
    if left is not None and right is not None:
        return left, right
    if isinstance(seen, str) and isinstance(value, str):
        return seen, value
    raise TypeError("cannot order %s against %s" % (_show(seen), _dumps(value)))


def _equal(seen: Any, value: Any, raw: str, named: bool = False) -> bool:
    if isinstance(seen, bool) or isinstance(value, bool):
        return seen is value
    seen_version, value_version = _version(seen, named), _as_version(raw)
    value_is_version = not isinstance(value, str) or _whole_version(value)
    if seen_version is not None and value_version is not None and value_is_version:
        a, b = _padded(seen_version, value_version)
        return a == b
    left, right = _number(seen), _number(value)
    if left is not None and right is not None and not (isinstance(seen, str) and isinstance(value, str)):
        return left == right
    return seen == value


def _contains(seen: Any, value: Any) -> bool:
    if isinstance(seen, str):
        return (value if isinstance(value, str) else json.dumps(value)) in seen
    if isinstance(seen, list):
        return any(_equal(item, value, json.dumps(value)) for item in seen)
    if isinstance(seen, dict):
        return str(value) in seen
    raise TypeError("cannot look inside %s" % _show(seen))


def _expected(cond: Condition) -> str:
    # As written, so `>= 3.10` is not shown as 3.1; text is quoted to show where it ends.
    written = not isinstance(cond.value, str) or _whole_version(cond.value)
    value = cond.raw if written else json.dumps(cond.value)
    return "%s %s" % (cond.op, value)


def _show(value: Any, redact: Callable[[Any], Any] = _same) -> str:
    return cut(redact(_dumps(redact(value))), _EXCERPT)


def _dumps(value: Any) -> str:
    """JSON of a fact, whatever it holds (a lone surrogate, NaN, 5000 levels of nesting)."""
    return json.dumps(reportable(value))
