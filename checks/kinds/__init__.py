"""The check kinds: one module per kind, imported only when a config uses it.

Each module has a docstring naming its facts, and:
    DEFAULT_EXPECT      conditions used when a check gives none (None: it must give some)
    load(fields) -> params      validate its own fields (a config.Fields; fields.subjects names
                                the facts the check's conditions read, for kinds whose facts
                                cost time to gather)
    target(params) -> str       what it probes, for names and --dry-run
    probe(params, timeout_s, ctx) -> facts   the I/O; raises CheckError only when it cannot check;
                                ctx is the runner.RunContext (ctx.cleanup takes what it creates)
"""

import functools
import sys

from checks import ConfigError, expect
from checks.config import Fields, conditions
from checks.model import DEFAULT_TIMEOUT, MAX_RETRIES, MAX_RETRY_DELAY_S, MAX_TIMEOUT_S, SEVERITIES, Check

KINDS = {
    "http": "checks.kinds.http",
    "tcp": "checks.kinds.tcp",
    "command": "checks.kinds.command",
    "process": "checks.kinds.process",
    "docker": "checks.kinds.docker",
    "resources": "checks.kinds.resources",
    "prometheus": "checks.kinds.prometheus",
    "file": "checks.kinds.file",
    "log": "checks.kinds.log",
    "suite": "checks.kinds.suite",
}
# Steps (deploy and the subcommands after it) may also start what they test.
STEP_KINDS = dict(KINDS, spawn="checks.kinds.spawn")
# Kinds whose facts can say no_data (an empty answer), and so take on_no_data: what that is.
NO_DATA_KINDS = ("prometheus",)
NO_DATA = ("expect", "fail", "error", "pass")
# Descriptors one probe holds at once, for the kinds that need fewer than a command's pipes
# (runner.FDS_PER_CHECK): an HTTP request holds its socket (measured: 100 at once, http or
# https, hold 100 more), and one more is kept for a file it opens for a moment (/etc/hosts,
# a CA file, a module imported late).
FDS_PER_PROBE = {"http": 2}


def module(kind: str):
    name = STEP_KINDS[kind]
    if name not in sys.modules:  # 10,000 checks ask for the same few
        __import__(name)  # not importlib.import_module: importing importlib costs a one-check run
    return sys.modules[name]


def build_check(table, where: str, section: str, defaults=None, kinds=KINDS):
    """A model.Check from one config table: common fields here, the kind's own in its module."""
    defaults = defaults or {}
    fields = Fields(table, where)
    kind = fields.text("kind")
    if kind not in kinds:
        import difflib
        close = difflib.get_close_matches(str(kind), list(kinds), n=1)
        raise ConfigError("%s: unknown kind %r%s (known: %s)" % (fields.at("kind"), kind, " (did you mean %r?)" %
                                                                  close[0] if close else "", ", ".join(kinds)))
    kind_module = module(kind)
    conditions = _conditions(fields, "expect")
    until = _conditions(fields, "until")
    if not conditions:
        if kind_module.DEFAULT_EXPECT is None:
            raise ConfigError("%s: a %s check needs an expectation, e.g. 'count == 0'" % (fields.at("expect"), kind))
        conditions = list(_default_expect(kind_module))
    common = {
        "timeout": fields.number("timeout", defaults.get("timeout", DEFAULT_TIMEOUT), 0.001, MAX_TIMEOUT_S),
        "retries": fields.integer("retries", defaults.get("retries", 0), 0, MAX_RETRIES),
        "retry_delay": fields.number("retry_delay", defaults.get("retry_delay", 1.0), 0, MAX_RETRY_DELAY_S),
        "severity": fields.choice("severity", SEVERITIES, defaults.get("severity", "normal")),
        "tags": tuple(dict.fromkeys(list(defaults.get("tags", [])) + fields.strings("tags", []))),
        "until": tuple(until), "interval": fields.number("interval", 1.0, 0.01, MAX_RETRY_DELAY_S),
        "on_no_data": fields.choice("on_no_data", NO_DATA, "expect") if kind in NO_DATA_KINDS else "expect",
    }
    if kinds is KINDS:  # a step's facts are its kind's and the step's (repeats, captures): a check's are known
        _known_facts(kind_module, conditions, fields.at("expect"))
        _known_facts(kind_module, until, fields.at("until"))
    name = fields.text("name", None)
    fields.text("description", None)
    fields.subjects = frozenset(str(c.path[0]) for c in conditions + until)
    params = kind_module.load(fields)
    fields.done()
    target = kind_module.target(params)
    return Check(name=name or "%s %s" % (kind, target), section=section, kind=kind,
                 probe=functools.partial(kind_module.probe, params), expect=tuple(conditions),
                 target=target, **common)


COMMON_FACTS = ("error", "polls", "waited_s")  # any check's: its trouble, and how long `until` waited


def _known_facts(kind_module, conditions, where: str) -> None:
    """A condition on a fact its kind never gives (`latency < 200` for latency_ms) is a typo:
    exit 2 at load, not a failure that reads as an outage (and rolls a healthy deploy back)."""
    known = getattr(kind_module, "FACTS", None)
    for condition in conditions if known is not None else ():
        root = str(condition.path[0])
        if root not in known and root not in COMMON_FACTS:
            import difflib
            close = difflib.get_close_matches(root, known, n=1)
            raise ConfigError("%s: %r: %s checks have no fact %r%s (theirs: %s)" % (
                where, condition.text, kind_module.NAME, root, "; did you mean %r?" % close[0] if close else "",
                ", ".join(known)))


@functools.lru_cache(maxsize=None)
def _default_expect(kind_module) -> tuple:
    """A kind's default expectations, parsed once: 10,000 checks of a kind share them."""
    return tuple(expect.parse(text) for text in kind_module.DEFAULT_EXPECT)


def _conditions(fields: Fields, key: str) -> list:
    texts = fields.strings(key, [])
    return [condition for _, condition in conditions(texts, fields.at(key), "--" + key)] if texts else []
