"""Configuration: find and read JSON/TOML, interpolate ${ENV}, validate with field paths.

Every error names the field it is about (`health.checks[2].timeout: expected a
number, got "ten"`), so a user fixes a config without reading our code.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import ConfigError, fsio
from checks.secrets import Secrets, collect_fields, secret_field, secret_name

DEFAULT_FILES = ("smoke.toml", "smoke.json")
MAX_DEPTH = 64  # tables and lists within each other; deeper is a mistake (or an attack), not a config
MAX_CONFIG_BYTES = 16 * 1024 * 1024
_REQUIRED = object()


def find(explicit: Optional[str], environ=os.environ) -> Optional[str]:
    """--config, then $SMOKE_CONFIG, then smoke.toml / smoke.json here; None if none.

    Where TOML cannot be read (before 3.11), a smoke.json beside a smoke.toml wins. One found
    here is refused (ConfigError) where another user may write (/tmp): a config runs
    commands, and anyone could have put it there, or a smoke.toml beside ours.
    """
    if explicit:
        return explicit
    if environ.get("SMOKE_CONFIG"):
        return environ["SMOKE_CONFIG"]
    found = [name for name in DEFAULT_FILES if os.path.exists(name)]
    if not found:
        return None
    name = "smoke.json" if len(found) == 2 and sys.version_info < (3, 11) else found[0]
    others = fsio.written_by_others(os.stat("."))
    if others:
        raise ConfigError("./%s: not read: this directory (%s) %s, so another user could have put it there; "
                          "if it is yours, give it: --config ./%s" % (name, os.getcwd(), others, name))
    return name


def read_trusted(path: str, cap: int, timeout: float = fsio.READ_TIMEOUT_S,
                 because: str = "what it says runs as you") -> bytes:
    """fsio.read_bounded of a file that says what is done (a config, a targets file, the report
    a rollback acts on, a perf baseline); refused (ConfigError) when a user other than us and
    root could have written it, since it would steer what runs as us. Judged on what was
    opened, so a file swapped after the check is never read. OSError when it cannot be read."""
    try:
        fd = fsio.open_steady(path)  # a FIFO: its writer is waited for below
    except fsio.Refused as exc:  # a link or a directory of another user's on the way: it chose what is read
        raise ConfigError("%s: not read: %s, and %s" % (path, fsio.why(exc).split(" (keep a state")[0], because))
    try:
        info = os.fstat(fd)
        others = fsio.written_by_others(info)
        if others:
            hint = " (or chmod go-w)" if fsio.ours_or_roots(info) else ""
            raise ConfigError("%s: not read: it %s, and %s: read it, then copy it to a file of your own%s" % (
                path, others, because, hint))
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            raise OSError(errno.EINVAL, "not a regular file or a pipe")  # a device: /dev/zero never ends
        return fsio.read_bounded(fd, cap, timeout)
    finally:
        os.close(fd)


_LOAD_ENDS: List[Optional[float]] = [None]  # when what loading waits on outside must be done (--deadline's end)


def bound_loading(seconds: Optional[float]) -> None:
    """What loading a config waits on outside (a targets URL) is bounded by --deadline too,
    from now; None: by each wait's own cap."""
    import time
    _LOAD_ENDS[0] = time.monotonic() + seconds if seconds else None


def loading_left(cap: float) -> float:
    """Seconds loading may still wait on something outside: cap, or less, what is left of
    --deadline (at least a moment, so that the wait says it timed out)."""
    import time
    return cap if _LOAD_ENDS[0] is None else max(0.01, min(cap, _LOAD_ENDS[0] - time.monotonic()))


def load(path: str, secrets: Secrets, environ=os.environ, read_timeout: float = fsio.READ_TIMEOUT_S,
         per_section: bool = False) -> Dict[str, Any]:
    """Read a config file into a dict with ${ENV} interpolated; secrets are collected. A
    config from a FIFO or a pipe (--config <(...)) must be written within read_timeout.
    per_section: a section that cannot be filled (a variable unset) is said when it is read,
    not now (a run of one command never stops on a variable only another's section uses).

    A top-level `secrets` list names environment variables whose values are secret
    whatever their names; it is read before anything is interpolated.
    """
    try:
        data = read_trusted(path, MAX_CONFIG_BYTES, read_timeout)
    except OSError as exc:
        raise ConfigError("%s: cannot read config: %s" % (path, fsio.why(exc)))
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError("%s: config is over %d MiB" % (path, MAX_CONFIG_BYTES >> 20))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError("%s: config is not UTF-8 (byte %d)" % (path, exc.start))
    doc = _parse_toml(path, text) if path.endswith(".toml") else parse_json(text, path)
    if not isinstance(doc, dict):
        raise ConfigError("%s: the top level must be an object of sections, e.g. {\"health\": {...}}" % path)
    _check_values(doc)
    names = Fields(doc, "").strings("secrets", [])
    secrets.names.update(names)
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", json.dumps(doc)))  # every ${NAME} written, used or not
    for i, name in enumerate(names):
        if name not in used:  # a misspelt name would leave the real variable unmasked
            raise ConfigError("secrets[%d]: no ${%s} in the config uses %s" % (i, name, name))
    expanded = _Expanded()
    for key, value in doc.items():
        if key == "secrets":
            continue
        try:
            expanded[key] = interpolate(value, key, secrets, environ)
        except ConfigError as exc:  # said when the section is read: one a command does not run costs it nothing
            if not per_section:
                raise
            expanded.failed[key] = exc
    collect_fields(dict(expanded), secrets)
    return expanded


class _Expanded(dict):
    """A config's sections, ${...} filled; one that could not be (a variable unset) raises its
    ConfigError when it is read, so `history` or a `health` run never stops on ADMIN_TOKEN
    that only the deploy section uses."""

    def __init__(self):
        super().__init__()
        self.failed: Dict[str, ConfigError] = {}

    def __contains__(self, key) -> bool:
        return key in self.failed or super().__contains__(key)

    def __getitem__(self, key):
        if key in self.failed:
            raise self.failed[key]
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default


def _check_values(doc: Any) -> None:
    """Refuse nesting past MAX_DEPTH, text no program can take (a lone surrogate, as JSON's
    "\\ud800" gives) and TOML's dates and times (JSON has none); walking without recursion,
    so any depth can be refused. Where a field is, is worked out only when it is said or
    walked into: 10,000 checks are many fields."""
    stack = [(doc, "", 0)]
    while stack:
        obj, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError("%s: nested deeper than %d levels" % (where, MAX_DEPTH))
        for key, value in obj.items() if isinstance(obj, dict) else enumerate(obj):
            kind = type(value)
            if kind is str:
                if not value.isascii() and re.search(_LONE_SURROGATE, value):
                    raise ConfigError("%s: holds a lone surrogate (\\ud800-\\udfff), which is not text"
                                      % _at(where, key))
            elif kind in _SCALARS:
                pass
            elif isinstance(value, (dict, list)):
                stack.append((value, _at(where, key), depth + 1))
            elif isinstance(key, str) and key.startswith("_"):  # a comment (_note = 2026-11-23): harmless
                obj[key] = value.isoformat()
            else:
                raise ConfigError("%s: a TOML date or time is not supported here; write it as a string"
                                  % _at(where, key))
            if type(key) is str and not key.isascii() and re.search(_LONE_SURROGATE, key):
                raise ConfigError("%s: holds a lone surrogate (\\ud800-\\udfff), which is not text" % _at(where, key))


_LONE_SURROGATE = "[\ud800-\udfff]"  # compiled on first use (re's cache): most configs are ASCII
_SCALARS = frozenset((str, int, float, bool, type(None)))


def _at(where: str, key: Any) -> str:
    return "%s[%d]" % (where, key) if isinstance(key, int) else _join(where, key)


class _Twice(dict):
    """A JSON object that had a key twice (the second would silently win): found after parsing,
    so that the error can name where it is."""

    key = ""


def _object(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set = set()
    twice = _Twice(obj)
    twice.key = next(key for key, _ in pairs if key in seen or seen.add(key))
    return twice


def parse_json(text: str, where: str) -> Any:
    """JSON as a config may hold it: a key given twice at any level, nesting past what anyone
    writes, or broken JSON is a ConfigError naming where (where: the file, or the flag, as
    --json, whose one line gets the column after the message)."""
    try:
        doc = json.loads(text, object_pairs_hook=_object)
    except RecursionError:
        raise ConfigError("%s: invalid JSON: nested deeper than %d levels" % (where, MAX_DEPTH))
    except ValueError as exc:
        line, col, why = getattr(exc, "lineno", 0), getattr(exc, "colno", 0), getattr(exc, "msg", exc)
        if where.startswith("--"):
            raise ConfigError("%s: not valid JSON: %s (column %d)" % (where, why, col))
        raise ConfigError("%s: invalid JSON: %s" % ("%s:%d:%d" % (where, line, col) if line else where, why))
    stack = [(doc, "")]
    while stack:  # without recursion: any depth json gave back can be walked
        obj, at = stack.pop()
        if isinstance(obj, _Twice):
            raise ConfigError("%s: %s: %r is given twice (the second would silently replace the first)"
                              % (where, at or "the top level", obj.key))
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
        stack += [(value, "%s[%d]" % (at, key) if isinstance(key, int) else _join(at, key)) for key, value in items
                  if isinstance(value, (dict, list))]
    return doc


def same_name(name: str) -> str:
    """A name as uniqueness sees it: two that are the same text after Unicode NFC are one name."""
    if name.isascii():
        return name
    import unicodedata
    return unicodedata.normalize("NFC", name)


def _parse_toml(path: str, text: str) -> Any:
    try:
        import tomllib
    except ImportError:
        raise ConfigError("%s: TOML needs Python 3.11 or newer (tomllib); use a JSON config here" % path)
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ConfigError("%s: invalid TOML: nested deeper than %d levels" % (path, MAX_DEPTH))
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if where:
            message = message[:where.start()].strip()
            raise ConfigError("%s:%s:%s: invalid TOML: %s" % (path, where.group(1), where.group(2), message))
        raise ConfigError("%s: invalid TOML: %s" % (path, message))


def interpolate(obj: Any, where: str, secrets: Secrets, environ=os.environ, secret: bool = False,
                used: Optional[set] = None) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string; `$${` is a literal `${`.

    A variable's value becomes a secret when its name is secret (secrets.secret_variable)
    or it lands in a secret-named field; a default is written in the config, never a secret.
    A variable set but empty is an error unless a default allows it (${VAR:-}): an empty
    URL or token is a mistake of the environment, better said than sent. `used`
    collects the names of the variables referenced.
    """
    if isinstance(obj, dict):  # under "env", keys are variable names: judged as those (PGPASSWORD, MYSQL_PWD)
        env = where.endswith(".env") or where == "env"
        return {k: v if type(v) in _SCALARS and (type(v) is not str or "$" not in v) else  # nothing to fill
                interpolate(v, _join(where, k), secrets, environ, secret or secret_field(k) or env and secret_name(k),
                            used)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [v if type(v) in _SCALARS and (type(v) is not str or "$" not in v) else
                interpolate(v, "%s[%d]" % (where, i), secrets, environ, secret, used) for i, v in enumerate(obj)]
    if not isinstance(obj, str) or "$" not in obj:
        return obj

    def value(name: str, default: Optional[str]) -> str:
        field = where or "config"
        if used is not None:
            used.add(name)
            used.update(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", default or ""))  # named there, even unused
        if default is not None and not environ.get(name):  # unset or empty, as in the shell
            return _expand(default, value, field)  # ${A:-${B}}: the default is expanded, as a shell does
        if name not in environ:
            raise ConfigError("%s: environment variable %s is not set (give a default: ${%s:-value})"
                              % (field, name, name))
        if not environ[name]:
            raise ConfigError("%s: environment variable %s is empty (give a default: ${%s:-value}, "
                              "or ${%s:-} where empty is meant)" % (field, name, name, name))
        if secret or secrets.secret_variable(name):
            secrets.add(environ[name])
        return environ[name]

    if ":-" in obj:  # a default is checked whether it is used or not
        _expand(obj, _checked(where or "config"), where or "config")
    expanded = _expand(obj, value, where or "config")
    if re.search(_TYPED_FIELD, where) and re.fullmatch(_WHOLE_VARIABLE, obj):
        return _typed(expanded)
    return expanded


# Patterns as text: re compiles (and caches) them on first use, and only a config with a ${ uses them
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# In a request's `json` body and a target's `vars`, a string that is one variable and nothing
# else takes its value's JSON type: "seed": "${SEED}" sends 42, not "42"; "${DEBUG:-false}" false.
_TYPED_FIELD = r"(^|\.)(json|vars)(\.|\[|$)"
_WHOLE_VARIABLE = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^${}]*)?\}"


def _typed(text: str) -> Any:
    """text as the JSON number, true, false or null it spells exactly; else text itself."""
    def refuse(constant):  # NaN, Infinity: not JSON
        raise ValueError(constant)
    if text != text.strip():
        return text
    try:
        value = json.loads(text, parse_constant=refuse)
    except ValueError:
        return text
    return value if value is None or isinstance(value, (bool, int, float)) else text


def _expand(text: str, value, field: str) -> str:
    """text with $${ as a literal ${, and each ${NAME} or ${NAME:-default} as value(NAME, default
    or None) gives it; a default may hold ${...} itself. Any other ${ is an error, not text to
    send: one never closed (${API_TOKEN), one with no name (${}, ${ A}), or a shell operator
    this is not a shell for (${A:=x}, ${A-x})."""
    out, i = [], 0
    while True:
        j = text.find("$", i)
        if j < 0:
            return "".join(out) + text[i:]
        out.append(text[i:j])
        if text.startswith("$${", j):
            out.append("${")
            i = j + 3
            continue
        if not text.startswith("${", j):  # a lone $ ($5, $HOME): text
            out.append("$")
            i = j + 1
            continue
        name = re.compile(_NAME).match(text, j + 2)
        end = name.end() if name and text.startswith("}", name.end()) else _closing(text, j + 2, field)
        if name is None or end < 0:
            raise ConfigError("%s: %s: write ${NAME} or ${NAME:-default} (or $${ for a literal ${)" % (
                field, "a '${' is not closed" if end < 0 else "'${' must be followed by a variable's name "
                "(letters, digits, _)"))
        after = name.end()
        if after == end:
            out.append(value(name.group(), None))
        elif text.startswith(":-", after):
            out.append(value(name.group(), text[after + 2:end]))
        else:
            raise _unsupported(field, name.group(), text[after:end])
        i = end + 1


def _checked(field: str):
    """A value() for _expand that only checks what a default holds, at any depth."""
    def check(name: str, default: Optional[str]) -> str:
        if default is not None:
            _expand(default, check, field)
        return ""
    return check


def _unsupported(field: str, name: str, rest: str) -> ConfigError:
    """${NAME<rest>}: the shell operator it looks like, and what to write instead."""
    operator = re.match(r":?[-=+?]?", rest).group()
    instead = {"-": "${%s:-...} (it takes the default when %s is empty too)", "=": "${%s:-...} (nothing is assigned)",
               "+": "the value itself (there is no 'when set' here)", "?": "${%s} (unset or empty is an error already)"}
    if operator.lstrip(":") not in instead:
        return ConfigError("%s: ${%s must be followed by } or :-default (only ${NAME} and ${NAME:-default} are "
                           "replaced; $${ gives a literal ${)" % (field, name))
    return ConfigError("%s: ${%s%s...}: %r is a shell's operator, not supported here (only ${NAME} and "
                       "${NAME:-default}): write %s" % (field, name, operator, operator,
                                                        instead[operator.lstrip(":")].replace("%s", name)))


def _closing(text: str, start: int, field: str) -> int:
    """Where the } that closes a ${ whose inside starts at start is, or -1 (a ${ inside opens
    one more, at most MAX_DEPTH deep)."""
    depth, i = 1, start
    while i < len(text):
        if text.startswith("$${", i):
            i += 3
            continue
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            if depth > MAX_DEPTH:
                raise ConfigError("%s: ${...} nested deeper than %d levels" % (field, MAX_DEPTH))
            continue
        if text[i] == "}":
            depth -= 1
            if not depth:
                return i
        i += 1
    return -1


def _join(where: str, key: str) -> str:
    return "%s.%s" % (where, key) if where else str(key)


def check_os_text(value: str, where: str) -> None:
    """No program, path or environment can hold a NUL, and an empty path names nothing."""
    if "\0" in value:
        raise ConfigError("%s: holds a NUL character, which no path or argument can" % where)
    if not value:
        raise ConfigError("%s: is empty" % where)


def range_problem(value: float, low: float, high: float = math.inf) -> Optional[str]:
    """Why value is out of [low, high], or None; infinity and NaN are never in range."""
    try:
        in_range = math.isfinite(value) and low <= value <= high
    except OverflowError:  # an integer too big for a float
        in_range = False
    if in_range:
        return None
    try:
        below = value < low
    except OverflowError:
        below = False
    def shown(bound: float) -> str:  # 1e+06 stays, but 4194304 is not shown as 4.1943e+06
        short = "%g" % bound
        return short if float(short) == bound or not float(bound).is_integer() else str(int(bound))
    return "must be %s" % ("at least %s" % shown(low) if below or high == math.inf
                           else "between %s and %s" % (shown(low), shown(high)))


def bounded(low: float, high: float = math.inf, integer: bool = False):
    """An argparse type for a number in [low, high]: `--deadline -1` is a usage error, not a run."""
    def parse(text: str):
        import argparse

        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected %s, got %r" % ("a whole number" if integer else "a number",
                                                                      text if len(text) <= 24 else text[:24] + "…"))
        problem = range_problem(value, low, high)
        if problem:
            raise argparse.ArgumentTypeError("%s, got %s" % (problem, text if len(text) <= 24 else text[:24] + "…"))
        return value
    return parse


class Fields:
    """Reads one config table; every error names the field; unknown fields are errors."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise ConfigError("%s: expected an object, got %s" % (where, _type_name(data)))
        self.data, self.where, self.seen = data, where, set()
        self.subjects: frozenset = frozenset()  # set by build_check for the kind's load()

    def at(self, key: str) -> str:
        # A table built from a command-line option (--url) is named by the option alone.
        return self.where if self.where.startswith("--") else _join(self.where, key)

    def get(self, key: str, types: Tuple[type, ...], default: Any = _REQUIRED) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                import difflib
                close = difflib.get_close_matches(key, [str(k) for k in self.data if k not in self.seen], n=1)
                raise ConfigError("%s: required field is missing%s" % (
                    self.at(key), " (is '%s' a typo of it?)" % close[0] if close else ""))
            return default
        value = self.data[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError("%s: expected %s, got %s" % (self.at(key), _types_name(types), _shown(value)))
        return value

    def text(self, key: str, default: Any = _REQUIRED) -> Any:
        return self.get(key, (str,), default)

    def path(self, key: str, default: Any = _REQUIRED) -> Any:
        """Text handed to the operating system (a path, an argument): no NUL, no empty."""
        value = self.text(key, default)
        if value is not None and value is not default:
            check_os_text(value, self.at(key))
        return value

    def flag(self, key: str, default: bool) -> bool:
        return self.get(key, (bool,), default)

    def number(self, key: str, default: Any = _REQUIRED, minimum: float = 0, maximum: float = math.inf,
               integer: bool = False) -> Any:
        """A number in [minimum, maximum]; every field states its bounds (1e308 seconds is no timeout)."""
        self.seen.add(key)
        if key not in self.data:  # most fields are left to their defaults, which are ours and in range
            if default is _REQUIRED:
                raise ConfigError("%s: required field is missing" % self.at(key))
            return default
        value = self.data[key]
        if isinstance(value, str) and "_" not in value:  # "${TIMEOUT:-5}" arrives as text; "1_0" is a typo
            try:
                value = float(value)
            except ValueError:
                pass
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError("%s: expected %s, got %s" % (self.at(key), "a whole number" if integer else "a number",
                                                         _shown(value)))
        problem = range_problem(value, minimum, maximum)
        if problem:
            raise ConfigError("%s: %s, got %s" % (self.at(key), problem, _number_text(value)))
        if integer:
            if value != int(value):
                raise ConfigError("%s: expected a whole number, got %s" % (self.at(key), _number_text(value)))
            return int(value)
        return value

    def integer(self, key: str, default: Any = _REQUIRED, minimum: int = 0, maximum: float = math.inf) -> Any:
        return self.number(key, default, minimum, maximum, integer=True)

    def strings(self, key: str, default: Any = _REQUIRED) -> List[str]:
        """A list of strings; a single string is taken as a list of one."""
        value = self.get(key, (list, str), default)
        if isinstance(value, str):
            return [value]
        for i, item in enumerate(value or []):
            if not isinstance(item, str):
                raise ConfigError("%s[%d]: expected a string, got %s" % (self.at(key), i, _shown(item)))
        return value

    def choice(self, key: str, choices: Tuple[str, ...], default: str) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise ConfigError("%s: expected one of %s, got %s" % (self.at(key), ", ".join(choices), _shown(value)))
        return value

    def done(self) -> None:
        """Reject fields nobody read: a typo must not silently disable a check."""
        for key in self.data:
            if key not in self.seen and not str(key).startswith("_"):
                import difflib
                close = difflib.get_close_matches(str(key), sorted(self.seen), n=1)
                hint = " (did you mean '%s'?)" % close[0] if close else ""
                raise ConfigError("%s: unknown field%s" % (self.at(key), hint))


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _types_name(types: Tuple[type, ...]) -> str:
    names = []
    for t in types:
        name = {str: "a string", bool: "true or false", int: "a number", float: "a number",
                list: "a list", dict: "an object"}.get(t, t.__name__)
        if name not in names:
            names.append(name)
    return " or ".join(names)


def _shown(value: Any) -> str:
    """A value for an error message: whole or not at all, so no secret is ever shown in part."""
    if value is None:
        return "null"
    text = json.dumps(value, default=str)
    if len(text) <= 40:
        return "%s %s" % (_type_name(value), text)
    return "a string of %d characters" % len(value) if isinstance(value, str) else _type_name(value)


def _number_text(value: float) -> str:
    if isinstance(value, int) and abs(value) >= 10 ** 24:
        return "a %d-digit number" % len(str(abs(value)))
    return "%g" % value


def conditions(texts, where: str, flag: str):
    """[(label, parsed condition)] of a list of conditions from a config field (where), or
    from the command line (where starts with --: then each is named as given to flag); each
    error names the one it is about."""
    from checks import expect

    parsed = []
    for i, text in enumerate(texts):
        label = "%s %r" % (flag, text) if where.startswith("--") else "%s[%d]" % (where, i)
        try:
            parsed.append((label, expect.parse(text)))
        except expect.ConditionError as exc:
            raise ConfigError("%s: %s" % (label, exc))
    return parsed
