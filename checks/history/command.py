"""`smoke.py history`: the run history check by check, for an incident shell (which checks fail,
since when, how often they passed). It reads what runs left and runs no check: not a section
of a config, none of the run flags; it reports and does not judge, so it exits 0 (2 on bad
usage, 3 when the --html file cannot be written).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List

from checks import history

EXAMPLES = """  python3 smoke.py history
  python3 smoke.py history --check api --check db --last 50
  python3 smoke.py history --tag hourly --format json
  python3 smoke.py history --html history.html --state-dir /var/lib/smoke
"""
_LETTERS = {"pass": ".", "warn": "w", "fail": "F", "error": "E"}


def add_arguments(parser) -> None:
    parser.add_argument("--state-dir", metavar="DIR",
                        help="the history's directory (default: the config's state_dir, else $XDG_STATE_HOME/"
                             "smoke.py, else ~/.local/state/smoke.py: where runs keep it)")
    parser.add_argument("--config", metavar="FILE", help="read the state_dir this config names (default: the "
                                                         "config a run would find: $SMOKE_CONFIG, ./smoke.toml, ./smoke.json)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")
    parser.add_argument("--html", metavar="FILE", help="also write the history as a page (a strip per check)")
    parser.add_argument("--check", action="append", default=[], metavar="NAME", help="only this check (repeatable)")
    parser.add_argument("--tag", action="append", default=[], metavar="TAG",
                        help="only runs chosen by --tag TAG (repeatable: any of them)")
    parser.add_argument("--command", dest="of_command", metavar="NAME", help="only runs of this command (health, "
                                                                             "perf, all, ...)")
    from checks.config import bounded
    parser.add_argument("--last", type=bounded(1, 10 ** 9, integer=True), metavar="N",
                        help="only the newest N runs (of those chosen)")


def main(args) -> int:
    from checks import SmokeError, state
    from checks.cli.terminal import emit, say

    try:
        directory = _state_dir(args)
        runs, warnings = state.history(directory, strict=True)  # refused: its runs exist, "no runs" would lie
        if args.html is not None:
            from checks import sinks
            sinks.check_report(args.html, "--html", args.config)
        kept = [run for run in runs if history.chosen(run, args.tag, args.of_command)]
        kept = kept[-args.last:] if args.last else kept
        rows = history.summarise(kept, args.check or None, recent=history.RECENT)
        where = os.path.join(directory, "history.jsonl")
        for line in warnings + _unknown(args, runs, kept, rows):
            say("smoke.py history: " + line)
        code = 0
        if args.html is not None:  # before the history is printed: the last thing said is how it ended
            from checks import page, sinks
            problem = sinks.write_output(args.html, page.render_history(
                kept, where, args.check or None, args.tag, args.of_command))
            if problem:
                say("smoke.py history: --html: " + problem)
                code = 3
        emit(_json(where, runs, kept, rows, args, warnings) if args.format == "json" else _text(where, runs, kept,
                                                                                                 rows, args))
        return code
    except SmokeError as exc:
        say("smoke.py history: error: %s" % exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _state_dir(args) -> str:
    """--state-dir, else the config's state_dir (the config a run would read), else the default."""
    from checks import ConfigError, config, state
    from checks.secrets import Secrets

    if args.state_dir is not None:
        if not args.state_dir.strip():
            raise ConfigError("--state-dir: give a directory")
        return args.state_dir
    path = config.find(args.config)
    if path is None:
        return state.default_dir()
    doc = config.load(path, Secrets(), per_section=True)  # only state_dir is read: no other variable is needed
    try:
        return config.Fields(doc, "").path("state_dir", None) or state.default_dir()
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (path, exc))


def _unknown(args, runs: List[Dict[str, Any]], kept: List[Dict[str, Any]], rows: List[Dict[str, Any]]) -> List[str]:
    """Why a narrowing found nothing, with the names it might have meant."""
    import difflib

    if runs and not kept and args.of_command:
        commands = sorted({str(run.get("command")) for run in runs})
        return ["no run of command %r is kept (commands: %s)" % (args.of_command, ", ".join(commands))]
    if runs and not kept and args.tag:
        return ["no run chosen by --tag %s is kept" % " or ".join(args.tag)]
    found = {row["name"] for row in rows}
    names = {name for run in kept for name in history.statuses(run)}
    out = []
    for name in args.check:
        if name not in found:
            close = difflib.get_close_matches(name, names, n=1)
            out.append("no run has a check named %r%s" % (name, " (did you mean %s?)" % close[0] if close else ""))
    return out


def _ago(when: str) -> str:
    import calendar
    import time

    try:
        seconds = time.time() - calendar.timegm(time.strptime(when[:19], "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, TypeError):
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return " (%d%s ago)" % (seconds // size, unit)
    return " (%ds ago)" % max(0, seconds)


def _span(runs: List[Dict[str, Any]], kept: List[Dict[str, Any]], args, where: str) -> str:
    interrupted = sum(history.interrupted(run) for run in runs)
    narrowed = [("command %s" % args.of_command) if args.of_command else "",
                ("--tag %s" % " or ".join(args.tag)) if args.tag else "", ("the newest %d" % args.last)
                if args.last else ""]
    return "%d run%s%s in %s%s%s" % (
        len(kept), "" if len(kept) == 1 else "s", " (%s)" % ", ".join(n for n in narrowed if n)
        if any(narrowed) else "", where, ", %s to %s" % (kept[0].get("time"), kept[-1].get("time")) if kept else "",
        " (and %d a signal stopped, passed over)" % interrupted if interrupted else "")


def _text(where: str, runs: List[Dict[str, Any]], kept: List[Dict[str, Any]], rows: List[Dict[str, Any]],
          args) -> str:
    from checks.render import printable

    if not runs:
        return "smoke.py history: no runs recorded in %s (each run of smoke.py adds one; --state-dir DIR " \
               "reads another)\n" % printable(where)
    lines = [printable("smoke.py history: %s" % _span(runs, kept, args, where))]
    table = [("check", "last", "since", "streak", "pass rate", "flaky", "recent (newest last)")]
    for row in rows:
        table.append((printable(row["name"]), row["last"].upper(), "%s%s" % (row["since"][:19], _ago(row["since"])),
                      "%d %s" % (row["streak"], "failing" if row["last"] in history.FAILING else "passing"),
                      "%.0f%% of %d" % (100 * row["pass_rate"], row["runs"]), str(row["flaky"] or ""),
                      "".join(_LETTERS[status] for status in row["recent"])))
    widths = [max(len(cells[i]) for cells in table) for i in range(len(table[0]))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in table]
    if rows:
        lines.append("recent: . pass  w warn  F fail  E error")
    return "\n".join(lines) + "\n"


def _json(where: str, runs: List[Dict[str, Any]], kept: List[Dict[str, Any]], rows: List[Dict[str, Any]], args,
          warnings: List[str]) -> str:
    from checks.model import reportable
    from checks.render import render_json

    return render_json(reportable({
        "schema": "smoke.history/1", "history": where, "runs": len(kept),
        "interrupted": sum(history.interrupted(run) for run in runs),
        "first": kept[0].get("time") if kept else None, "last": kept[-1].get("time") if kept else None,
        "narrowed": {"check": args.check, "tag": args.tag, "command": args.of_command, "last": args.last},
        "checks": rows, "warnings": warnings}))
