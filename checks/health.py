"""health: is everything up? HTTP endpoints, ports, commands, processes, containers,
host resources, Prometheus queries, files and logs, checked concurrently.

Config section:
    {"health": {"defaults": {"timeout": 5, "retries": 1},
                "tiers": {"daily": {"timeout": 120, "deadline": 1800}},
                "checks": [{"name": "api", "kind": "http", "url": "...", "expect": ["status == 200"]}]}}
A tier (a tag) sets the defaults of the checks tagged with it, and with --tag TIER the run's
deadline (--deadline wins).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import List, Optional

from checks import ConfigError
from checks.command import Command
from checks.config import Fields, bounded
from checks.kinds import build_check
from checks.model import MAX_RETRIES, MAX_RETRY_DELAY_S, MAX_TIMEOUT_S, SEVERITIES, Check, Outcome, Planned
from checks.runner import MAX_DEADLINE_S, RunContext, run_checks

NAME = "health"


def add_arguments(parser) -> None:
    """Flags for config-less checks in an incident shell; --expect and --name follow their check."""
    import argparse

    class AdHoc(argparse.Action):
        def __call__(self, parser, namespace, value, option):
            checks = list(namespace.adhoc or [])
            if self.dest in ("expect", "name"):
                if not checks:
                    parser.error("%s must come after the --url, --tcp or --resources it applies to" % option)
                if self.dest == "expect":
                    checks[-1].setdefault("expect", []).append(value)
                else:
                    checks[-1]["name"] = value
            elif self.dest == "url":
                checks.append({"kind": "http", "url": value, "_option": "--url"})
            elif self.dest == "tcp":
                checks.append({"kind": "tcp", "address": value, "_option": "--tcp"})
            elif self.dest == "disk" and checks and checks[-1]["kind"] == "resources":
                paths = checks[-1].setdefault("paths", ["/"])  # another mount, besides /
                paths.append(value)
            elif self.dest == "disk":
                checks.append({"kind": "resources", "paths": [value], "_option": "--disk"})
            else:
                checks.append({"kind": "resources", "_option": "--resources"})
            namespace.adhoc = checks

    group = parser.add_argument_group("checks without a config file (--expect and --name follow their check)")
    group.add_argument("--url", action=AdHoc, metavar="URL", help="an HTTP(S) check (default: status < 400)")
    group.add_argument("--tcp", action=AdHoc, metavar="HOST:PORT", help="a TCP connect check")
    group.add_argument("--resources", action=AdHoc, nargs=0,
                       help="memory and disk use of this host (default: each < 90%%; CPU by --expect "
                            "'cpu_percent < 90': a busy host is not a broken one)")
    group.add_argument("--disk", action=AdHoc, metavar="PATH",
                       help="the disk of this mount too (repeatable; for the --resources before it, else a "
                            "check of its own; the default is /)")
    group.add_argument("--expect", action=AdHoc, metavar="COND",
                       help="a condition for the check just before it, e.g. 'json.status == healthy' (repeatable; "
                            "the facts each kind gives: docs/kinds.md, the language: docs/conditions.md)")
    group.add_argument("--name", action=AdHoc, metavar="NAME", help="a name for the check just before it")
    every = parser.add_argument_group("options for every --url/--tcp/--resources check, wherever they are written")
    every.add_argument("--timeout", type=bounded(0.001, MAX_TIMEOUT_S), metavar="S",
                       help="seconds per attempt (default 10)")
    every.add_argument("--retries", type=bounded(0, MAX_RETRIES, integer=True), metavar="N",
                       help="attempts after the first (default 0)")
    every.add_argument("--insecure", action="store_true", help="do not verify TLS certificates of any --url")
    parser.set_defaults(adhoc=None)


class Checks(list):
    """The section's checks, and the deadline of each tier (tag) that has one."""

    deadlines: dict = {}


def load(section, where: str = NAME) -> List[Check]:
    fields = Fields(section, where)
    defaults = _defaults(Fields(fields.get("defaults", (dict,), {}), fields.at("defaults")))
    tiers, deadlines = {}, {}
    for tag, table in fields.get("tiers", (dict,), {}).items():
        tier = Fields(table, "%s.%s" % (fields.at("tiers"), tag))
        deadline = tier.number("deadline", None, 0.001, MAX_DEADLINE_S)
        if deadline is not None:
            deadlines[tag] = deadline
        tiers[tag] = {key: value for key, value in _defaults(tier, tier_fields=True).items()}
    tables = fields.get("checks", (list,))
    fields.done()
    checks = Checks(build_check(table, "%s.checks[%d]" % (where, i), NAME, _tiered(defaults, tiers, table))
                    for i, table in enumerate(tables))
    _unique(checks, lambda i: "%s.checks[%d].name" % (where, i))
    checks.deadlines = deadlines
    return checks


def _tiered(defaults: dict, tiers: dict, table) -> dict:
    """The defaults a check starts from: the section's, then those of each tier it is tagged with."""
    tags = list(defaults.get("tags", []))
    own = table.get("tags") if isinstance(table, dict) else None
    tags += [own] if isinstance(own, str) else own if isinstance(own, list) else []
    merged = dict(defaults)
    for tag in tags:
        merged.update(tiers.get(tag, {}))
    return merged


def deadline(checks, tags) -> Optional[float]:
    """The run's deadline when --tag selects tiers that have one (the shortest of them)."""
    found = [checks.deadlines[tag] for tag in tags if tag in getattr(checks, "deadlines", {})]
    return min(found) if found else None


def _unique(checks: List[Check], where) -> None:
    """Names pick checks (--only) and label results: two alike would be ambiguous."""
    from checks.config import same_name

    seen = set()
    for i, check in enumerate(checks):
        if same_name(check.name) in seen:
            raise ConfigError("%s: %r is used twice; names must be unique" % (where(i), check.name))
        seen.add(same_name(check.name))


def _defaults(fields: Fields, tier_fields: bool = False) -> dict:
    """Values every check of the section (or of a tier) starts from, validated where they are written."""
    if tier_fields:  # a tier sets how long its checks may take; what they are is theirs
        found = {"timeout": fields.number("timeout", None, 0.001, MAX_TIMEOUT_S),
                 "retries": fields.integer("retries", None, 0, MAX_RETRIES),
                 "retry_delay": fields.number("retry_delay", None, 0, MAX_RETRY_DELAY_S)}
        fields.done()
        return {key: value for key, value in found.items() if value is not None}
    severity = fields.text("severity", None)
    if severity is not None:
        fields.choice("severity", SEVERITIES, severity)
    found = {"timeout": fields.number("timeout", None, 0.001, MAX_TIMEOUT_S),
             "retries": fields.integer("retries", None, 0, MAX_RETRIES),
             "retry_delay": fields.number("retry_delay", None, 0, MAX_RETRY_DELAY_S), "severity": severity,
             "tags": fields.strings("tags", None)}
    fields.done()
    return {key: value for key, value in found.items() if value is not None}


def from_args(args, secrets, configured: Optional[List[Check]] = None) -> Optional[List[Check]]:
    """The configured checks and those given by --url, --tcp and --resources; None without such flags."""
    if not args.adhoc:
        return None
    checks = Checks(configured or [])
    checks.deadlines = getattr(configured, "deadlines", {})
    for table in args.adhoc:
        table = dict(table)
        option = table.pop("_option")
        if args.timeout is not None:
            table["timeout"] = args.timeout
        if args.retries is not None:
            table["retries"] = args.retries
        if args.insecure and table["kind"] == "http":
            table["insecure"] = True
        checks.append(build_check(table, option, NAME))
    _unique(checks, lambda i: "--name")
    return checks


def plan(checks: List[Check]) -> List[Planned]:
    return [Planned(check.name, check.section, check.kind, check.target, tuple(c.text for c in check.expect),
                    check.tags, check.severity, _options(check)) for check in checks]


def _options(check: Check) -> str:
    options = "timeout=%gs retries=%d" % (check.timeout, check.retries)
    if check.retries:
        options += " retry_delay=%gs" % check.retry_delay
    if check.severity != "normal":
        options += " severity=" + check.severity
    if check.tags:
        options += " tags=" + ",".join(check.tags)
    return options


def run(checks: List[Check], ctx: RunContext) -> Outcome:
    """Every chosen check at once (up to ctx.concurrency); a suite's result becomes its testcases'."""
    chosen = [check for check in checks if ctx.chosen is None or check.name in ctx.chosen]
    if not any(check.kind == "suite" for check in chosen):
        return Outcome(run_checks(chosen, ctx))
    from checks.kinds import suite
    facts: List[dict] = [{} for _ in chosen]
    results = run_checks(chosen, ctx, facts)
    folded = [one for check, result, found in zip(chosen, results, facts)
              for one in (suite.fold(check, result, found) if check.kind == "suite" else [result])]
    taken = {result.name for result in folded if result.kind != "suite"}  # a configured name never changes
    for index, result in enumerate(folded):  # a testcase named like a check (or another) gets a number
        if result.kind != "suite":
            continue
        name, number = result.name, 1
        while name in taken:
            number += 1
            name = "%s (%d)" % (result.name, number)
        taken.add(name)
        folded[index] = result._replace(name=name)
    return Outcome(folded)


class Health(Command):
    NAME = NAME
    FLAGS = "--url, --tcp, --resources"
    EXAMPLES = """  python3 smoke.py health --url http://127.0.0.1:8080/health --expect 'json.status == healthy' \\
      --expect 'latency_ms < 200'
  python3 smoke.py health --tcp 127.0.0.1:5432 --name postgres --resources --disk /var --format text
  python3 smoke.py health --config smoke.json --tag hourly --output report.json --quiet
"""
    add_arguments = staticmethod(add_arguments)
    from_args = staticmethod(from_args)
    load = staticmethod(load)
    plan = staticmethod(plan)
    run = staticmethod(run)
    deadline = staticmethod(deadline)

    def flags_describe(self, args) -> bool:
        return bool(args.adhoc)


COMMAND = Health()
