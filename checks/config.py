"""Configuration: find and read JSON/TOML, interpolate ${ENV}, validate with field paths, redact secrets.

Every error names the field it is about (`health.checks[2].timeout: expected a
number, got "ten"`), so a user fixes a config without reading our code.
"""

import json
import math
import os
import re
import sys
from typing import Any, Dict, Iterable, List, Optional, Tuple

from checks import ConfigError

DEFAULT_FILES = ("smoke.toml", "smoke.json")
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Fields whose values are secrets wherever they appear.
# Names that end in a secret word at a word boundary: bearer_token, X-Api-Key, db_password;
# not max_tokens or cookie_count, which response JSON is full of.
SECRET_FIELD = re.compile(r"(^|[_.-])(token|password|passwd|passphrase|secret|api[_-]?key|apikey|"
                          r"(private|secret|access)[_-]?key|authorization|credentials?|cookie|set-cookie)$",
                          re.IGNORECASE)
# Shorter values would blank out ordinary text ("80" inside "8080"), so they are not redacted.
_MIN_SECRET = 4
_REQUIRED = object()


class Secrets:
    """Values that must never reach a report, a log line or an error message."""

    def __init__(self, values: Iterable[str] = ()):
        self.values = set()
        for value in values:
            self.add(value)

    def add(self, value: Any) -> None:
        if isinstance(value, str) and len(value) >= _MIN_SECRET:
            self.values.add(value)

    def redact(self, obj: Any) -> Any:
        """A copy of obj with secret values, and the values of secret-named keys, masked."""
        if isinstance(obj, str):
            for value in sorted(self.values, key=len, reverse=True):
                obj = obj.replace(value, "***")
            return obj
        if isinstance(obj, dict):
            return {k: "***" if SECRET_FIELD.search(str(k)) and v else self.redact(v)
                    for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.redact(v) for v in obj]
        return obj


def find(explicit: Optional[str], environ=os.environ) -> Optional[str]:
    """--config, then $SMOKE_CONFIG, then smoke.toml / smoke.json here; None if none.

    Where TOML cannot be read (before 3.11), a smoke.json beside a smoke.toml wins.
    """
    if explicit:
        return explicit
    if environ.get("SMOKE_CONFIG"):
        return environ["SMOKE_CONFIG"]
    found = [name for name in DEFAULT_FILES if os.path.exists(name)]
    if len(found) == 2 and sys.version_info < (3, 11):
        return "smoke.json"
    return found[0] if found else None


def load(path: str, secrets: Secrets, environ=os.environ) -> Dict[str, Any]:
    """Read a config file into a dict with ${ENV} interpolated; secrets are collected."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(16 * 1024 * 1024)
    except OSError as exc:
        raise ConfigError("%s: cannot read config: %s" % (path, exc.strerror or exc))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError("%s: config is not UTF-8 (byte %d)" % (path, exc.start))
    doc = _parse_toml(path, text) if path.endswith(".toml") else _parse_json(path, text)
    if not isinstance(doc, dict):
        raise ConfigError("%s: the top level must be an object of sections, e.g. {\"health\": {...}}" % path)
    doc = interpolate(doc, "", secrets, environ)
    _collect_secret_fields(doc, secrets)
    return doc


def _parse_json(path: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        line, col = getattr(exc, "lineno", 0), getattr(exc, "colno", 0)
        raise ConfigError("%s:%d:%d: invalid JSON: %s" % (path, line, col, getattr(exc, "msg", exc)))


def _parse_toml(path: str, text: str) -> Any:
    try:
        import tomllib
    except ImportError:
        raise ConfigError("%s: TOML needs Python 3.11 or newer (tomllib); use a JSON config here" % path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if where:
            message = message[:where.start()].strip()
            raise ConfigError("%s:%s:%s: invalid TOML: %s" % (path, where.group(1), where.group(2), message))
        raise ConfigError("%s: invalid TOML: %s" % (path, message))


def interpolate(obj: Any, where: str, secrets: Secrets, environ=os.environ) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string; `$${` is a literal `${`."""
    if isinstance(obj, dict):
        return {k: interpolate(v, _join(where, k), secrets, environ) for k, v in obj.items()}
    if isinstance(obj, list):
        return [interpolate(v, "%s[%d]" % (where, i), secrets, environ) for i, v in enumerate(obj)]
    if not isinstance(obj, str) or "$" not in obj:
        return obj

    def substitute(match):
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if default is not None and not environ.get(name):  # unset or empty, as in the shell
            return default
        if name in environ:
            secrets.add(environ[name])
            return environ[name]
        raise ConfigError("%s: environment variable %s is not set (give a default: ${%s:-value})"
                          % (where or "config", name, name))

    return _ENV_REF.sub(substitute, obj)


def _collect_secret_fields(obj: Any, secrets: Secrets, secret: bool = False) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            _collect_secret_fields(value, secrets, secret or bool(SECRET_FIELD.search(str(key))))
    elif isinstance(obj, list):
        for value in obj:
            _collect_secret_fields(value, secrets, secret)
    elif secret:
        secrets.add(obj)


def _join(where: str, key: str) -> str:
    return "%s.%s" % (where, key) if where else str(key)


def range_problem(value: float, low: float, high: float = math.inf) -> Optional[str]:
    """Why value is out of [low, high], or None; infinity and NaN are never in range."""
    if math.isfinite(value) and low <= value <= high:
        return None
    return "must be %s" % ("at least %g" % low if high == math.inf else "between %g and %g" % (low, high))


def bounded(low: float, high: float = math.inf, integer: bool = False):
    """An argparse type for a number in [low, high]: `--deadline -1` is a usage error, not a run."""
    def parse(text: str):
        import argparse

        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected %s, got %r" % ("a whole number" if integer else "a number", text))
        problem = range_problem(value, low, high)
        if problem:
            raise argparse.ArgumentTypeError("%s, got %s" % (problem, text))
        return value
    return parse


class Fields:
    """Reads one config table; every error names the field; unknown fields are errors."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise ConfigError("%s: expected an object, got %s" % (where, _type_name(data)))
        self.data, self.where, self.seen = data, where, set()

    def at(self, key: str) -> str:
        # A table built from a command-line option (--url) is named by the option alone.
        return self.where if self.where.startswith("--") else _join(self.where, key)

    def get(self, key: str, types: Tuple[type, ...], default: Any = _REQUIRED) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise ConfigError("%s: required field is missing" % self.at(key))
            return default
        value = self.data[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError("%s: expected %s, got %s" % (self.at(key), _types_name(types), _shown(value)))
        return value

    def text(self, key: str, default: Any = _REQUIRED) -> Any:
        return self.get(key, (str,), default)

    def flag(self, key: str, default: bool) -> bool:
        return self.get(key, (bool,), default)

    def number(self, key: str, default: Any = _REQUIRED, minimum: float = 0) -> Any:
        self.seen.add(key)
        value = self.data.get(key, default)
        if value is _REQUIRED:
            raise ConfigError("%s: required field is missing" % self.at(key))
        if isinstance(value, str):  # "${TIMEOUT:-5}" arrives as text
            try:
                value = float(value)
            except ValueError:
                pass
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError("%s: expected a number, got %s" % (self.at(key), _shown(value)))
        problem = range_problem(value, minimum)
        if problem:
            raise ConfigError("%s: %s, got %s" % (self.at(key), problem, value))
        return value

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
    if value is None:
        return "null"
    text = json.dumps(value, default=str)
    return "%s %s" % (_type_name(value), text if len(text) <= 40 else text[:40] + "…")
