"""health: is everything up? HTTP endpoints, ports, commands, processes, containers,
host resources, Prometheus queries, files and logs, checked concurrently.

Config section:
    {"health": {"defaults": {"timeout": 5, "retries": 1},
                "checks": [{"name": "api", "kind": "http", "url": "...", "expect": ["status == 200"]}]}}
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import List

from checks import ConfigError, expect
from checks.config import Fields, bounded
from checks.kinds import build_check
from checks.model import MAX_RETRIES, MAX_RETRY_DELAY_S, MAX_TIMEOUT_S, SEVERITIES, Check
from checks.runner import RunContext, run_checks

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
            else:
                checks.append({"kind": "resources", "_option": "--resources"})
            namespace.adhoc = checks

    group = parser.add_argument_group("checks without a config file (--expect and --name follow their check)")
    group.add_argument("--url", action=AdHoc, metavar="URL", help="an HTTP(S) check (default: status < 400)")
    group.add_argument("--tcp", action=AdHoc, metavar="HOST:PORT", help="a TCP connect check")
    group.add_argument("--resources", action=AdHoc, nargs=0,
                       help="memory, CPU and disk of this host (default: each < 90%%)")
    group.add_argument("--expect", action=AdHoc, metavar="COND",
                       help="a condition for the check just before it, e.g. 'json.status == healthy' (repeatable)")
    group.add_argument("--name", action=AdHoc, metavar="NAME", help="a name for the check just before it")
    every = parser.add_argument_group("options for every --url/--tcp/--resources check, wherever they are written")
    every.add_argument("--timeout", type=bounded(0.001, MAX_TIMEOUT_S), metavar="S",
                       help="seconds per attempt (default 10)")
    every.add_argument("--retries", type=bounded(0, MAX_RETRIES, integer=True), metavar="N",
                       help="attempts after the first (default 0)")
    every.add_argument("--insecure", action="store_true", help="do not verify TLS certificates of any --url")
    parser.set_defaults(adhoc=None)


def load(section, where: str = NAME) -> List[Check]:
    fields = Fields(section, where)
    defaults = _defaults(Fields(fields.get("defaults", (dict,), {}), fields.at("defaults")))
    tables = fields.get("checks", (list,))
    fields.done()
    checks = [build_check(table, "%s.checks[%d]" % (where, i), NAME, defaults) for i, table in enumerate(tables)]
    _unique(checks, lambda i: "%s.checks[%d].name" % (where, i))
    return checks


def _unique(checks: List[Check], where) -> None:
    """Names pick checks (--only) and label results: two alike would be ambiguous."""
    seen = set()
    for i, check in enumerate(checks):
        if check.name in seen:
            raise ConfigError("%s: %r is used twice; names must be unique" % (where(i), check.name))
        seen.add(check.name)


def _defaults(fields: Fields) -> dict:
    """Values every check of the section starts from, validated where they are written."""
    severity = fields.text("severity", None)
    if severity is not None:
        fields.choice("severity", SEVERITIES, severity)
    found = {"timeout": fields.number("timeout", None, 0.001, MAX_TIMEOUT_S),
             "retries": fields.integer("retries", None, 0, MAX_RETRIES),
             "retry_delay": fields.number("retry_delay", None, 0, MAX_RETRY_DELAY_S), "severity": severity,
             "tags": fields.strings("tags", None)}
    fields.done()
    return {key: value for key, value in found.items() if value is not None}


def from_args(args) -> List[Check]:
    """The checks given by --url, --tcp and --resources."""
    checks = []
    for table in args.adhoc or []:
        table = dict(table)
        option = table.pop("_option")
        for text in table.get("expect", []):
            try:
                expect.parse(text)
            except expect.ConditionError as exc:
                raise ConfigError("--expect %r: %s" % (text, exc))
        if args.timeout is not None:
            table["timeout"] = args.timeout
        if args.retries is not None:
            table["retries"] = args.retries
        if args.insecure and table["kind"] == "http":
            table["insecure"] = True
        checks.append(build_check(table, option, NAME))
    _unique(checks, lambda i: "--name")
    return checks


def run(checks: List[Check], ctx: RunContext):
    return run_checks(checks, ctx)
