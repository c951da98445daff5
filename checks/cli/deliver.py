"""Deliver a run: the report built and finalised once, then written everywhere from that one
report, in this order: notifications, the run history, the files, stdout.

Finalised once: the verdict, the problems known by then (a file that cannot be written is
found before, by staging it), a signal that came during the run and the exit policy give
one exit code, and nothing rendered after that changes it. Only a signal during delivery
itself ends it early: what is still to be written says so, and the process exits with the
signal's code. History and notifications never change a verdict; their problems are said.
"""

from __future__ import annotations

import os
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import model, state
from checks.cli.gather import FILE_SINKS
from checks.cli.options import nagios
from checks.cli.terminal import emit, is_terminal, say
from checks.render import RENDERERS


STOPPED_DELIVERY_S = 5.0  # what notifications of a run a signal stopped may take: whoever stopped it waits


def start(prepared, clock) -> List[str]:
    """Before the run: --ping's start (the dead man's switch: this run began), within the share
    of --deadline kept for delivery (one request's timeout without one); its problems."""
    if not prepared.delivery.ping:
        return []
    import time

    import threading

    from checks import CheckError, lifecycle, notify
    budget = notify.Budget(time.monotonic() + (clock.reserve or notify.TIMEOUT_S))
    said: List[Optional[str]] = []
    done = threading.Event()

    def work() -> None:
        try:
            said.append(notify.ping(prepared.delivery.ping, "start", budget=budget))
        finally:
            done.set()
    try:  # in a thread, so that a signal reaches the main thread even while a DNS lookup hangs
        lifecycle.start_thread(work, "smoke-ping")
    except CheckError:
        work()
    while not done.wait(0.05):
        if budget.left() < -1.0:
            return ["--ping start: not sent: the delivery budget ran out"]
    return [problem for problem in said if problem]


def deliver(prepared, executed, start_problems: List[str], signals, closed, clock) -> int:
    """Build, finalise, record, notify, write and print the report; the process's exit code.
    Delivery has what is left of --deadline (clock.delivery_ends()), and a signal ends it."""
    import time

    from checks import fsio, notify

    args, redact = prepared.args, prepared.secrets.redact
    report = _report(prepared, executed)

    def late() -> bool:  # a signal the report does not say yet: it came during delivery, and ends it
        return signals.signum is not None and "interrupted" not in report

    ends = clock.delivery_ends()
    if signals.signum is not None:  # stopped: tell what must be told (a /fail ping), but go soon
        ends = min(ends, time.monotonic() + STOPPED_DELIVERY_S)
    budget = notify.Budget(ends, late)
    timeout = max(1.0, min(fsio.WRITE_TIMEOUT_S, budget.left()))  # for a FIFO's reader: at least a second
    prior = _history(prepared)

    def render(flag: str, report: Dict[str, Any]) -> bytes:
        if flag == "--html":  # the page, with each check's runs before this one
            from checks import page
            return page.render_html(report, prior).encode("utf-8", "replace")
        return RENDERERS[FILE_SINKS[flag]](report).encode("utf-8", "replace")

    staged, problems = _stage(prepared.sinks, report, render, lambda: signals.signum is not None, timeout)
    finalise(report, [redact(problem) for problem in start_problems + executed.problems + problems], signals.signum,
             nagios(args))
    told = _notify_within(prepared, report, prior, budget)
    untold = any(problem.startswith(("--notify:", "--notify-github:")) for problem in told)
    _add(report, redact, told + _record(prepared, report, not untold))
    report["duration_ms"] = round((time.monotonic() - clock.began) * 1000, 1)  # the run and its notifications
    for (flag, path), sink in staged:  # --output last: its report has what the others could not do
        _interrupt_if(late(), report, signals.signum, args)
        try:
            sink.write(render(flag, report), late, timeout)
        except OSError as exc:
            _add(report, redact, ["%s: cannot write %s: %s" % (flag, path, fsio.why(exc))])
    _interrupt_if(late(), report, signals.signum, args)
    _say_problems(report, args.quiet, prepared.state_dir == state.default_dir())
    if not (args.quiet and report["exit_code"] == 0):
        color = args.format == "text" and is_terminal(sys.stdout) and not os.environ.get("NO_COLOR")
        emit(RENDERERS[args.format](report, color=color), "stdout" in closed, stop=late)
    if late():  # it came while the report was printed
        return 3 if nagios(args) else getattr(model.ExitCode, model.SIGNAL_NAMES[signals.signum])
    return report["exit_code"]


def _report(prepared, executed) -> Dict[str, Any]:
    """The report as judged, masked (names and targets come from the config too), with the
    selection it was (the history keeps an hourly and a daily run apart)."""
    args = prepared.args
    report = model.build_report(args.command, executed.results, socket.gethostname(), executed.started,
                                executed.duration_ms, prepared.min_rate, None, prepared.section_rates,
                                executed.metrics)
    report = prepared.secrets.redact(report)
    chosen_by = {key: sorted(set(getattr(args, key))) for key in ("tag", "skip_tag", "only") if getattr(args, key)}
    if chosen_by:
        report["selection"] = chosen_by
    if args.instance:  # the name the run was given: a fleet's summary knows its hosts by it
        report["instance"] = args.instance
    return report


def finalise(report: Dict[str, Any], problems: List[str], signum: Optional[int], nagios_policy: bool) -> None:
    """The report's last word, said once: its problems (masked), a report file that could not be
    staged (a pass nobody can read is none: error; a failure stays one), a signal that came
    (interrupted), and the exit policy."""
    _add(report, lambda text: text, problems)
    if report["exit_code"] == 0 and any(problem.split(":", 1)[0] in FILE_SINKS for problem in problems):
        report.update(status="error", exit_code=int(model.ExitCode.UNKNOWN))
    if signum is not None:
        model.interrupt(report, signum)
    if nagios_policy:
        report["exit_code"] = model.exit_code(report, "nagios")


def _add(report: Dict[str, Any], redact, problems: List[str]) -> None:
    """Problems, masked and made reportable, onto the report's `problems`."""
    found = [model.reportable(redact(problem)) for problem in problems if problem]
    if found:
        report["problems"] = report.get("problems", []) + found


def _interrupt_if(late: bool, report: Dict[str, Any], signum: Optional[int], args) -> None:
    """A signal during delivery: what is still to be written says the run was interrupted."""
    if late and report.get("interrupted") is None:
        model.interrupt(report, signum)
        if nagios(args):
            report["exit_code"] = model.exit_code(report, "nagios")


def _stage(sinks: List[Tuple[str, str]], report: Dict[str, Any], render, stop,
           timeout: float) -> Tuple[list, List[str]]:
    """([((flag, path), staged file)], problems): each file opened and its space taken for the
    report as it stands (what it renders to now, and room for the problems to come)."""
    from checks import fsio
    from checks import sinks as files

    staged, problems = [], []
    for flag, path in sinks:
        size = len(render(flag, report)) + 65536
        try:
            staged.append(((flag, path), files.stage(path, size, stop, timeout)))
        except OSError as exc:
            problems.append("%s: cannot write %s: %s" % (flag, path, fsio.why(exc)))
    return staged, problems


def _history(prepared) -> List[Dict[str, Any]]:
    """The runs before this one, for the notifications that say what changed and the page's
    strips (read only when one of them is wanted)."""
    if not (prepared.delivery.notify or prepared.delivery.github or prepared.args.html):
        return []
    from checks import state
    return state.history(prepared.state_dir, state.RECENT)[0]


def _record(prepared, report: Dict[str, Any], told: bool) -> List[str]:
    """This run in the history, after its notifications (so a message that was not delivered
    is marked, and told by the next run); its problems (a history changes no verdict)."""
    from checks import state
    return state.record_run(prepared.state_dir, report, prepared.history_limit, told)


def _notify_within(prepared, report: Dict[str, Any], prior: List[Dict[str, Any]], budget) -> List[str]:
    """Each channel in a thread of its own, all waited for until the budget ends or a signal
    comes: a receiver that never answers is left behind, and costs the others nothing (the
    dead man's switch is not starved by a hung webhook). Their problems."""
    import threading

    from checks import CheckError, lifecycle

    said: List[str] = []
    pending = []
    for flag, send in _channels(prepared, report, prior, budget):
        done = threading.Event()

        def work(flag=flag, send=send, done=done) -> None:
            try:  # a garbled answer from a webhook or GitHub must not cost the report
                said.extend(problem for problem in send() if problem)
            except Exception as exc:
                said.append("%s: %s: %s" % (flag, type(exc).__name__, exc))
            finally:
                done.set()
        try:
            lifecycle.start_thread(work, "smoke-notify")
        except CheckError:  # no thread to be had: sent from here, each request within the budget still
            work()
        pending.append((flag, done))
    while not all(done.wait(0.05) for _, done in pending):
        if budget.stop() or budget.left() < -1.0:  # a request's own timeout ends within a second of the budget
            why = "interrupted" if budget.stop() else "the delivery budget ran out"
            return list(said) + ["%s: cut short: %s" % (flag, why) for flag, done in pending
                                 if not done.is_set()]
    return list(said)


def _channels(prepared, report: Dict[str, Any], prior: List[Dict[str, Any]], budget) -> list:
    """[(flag, send)]: what changed since the last run, told where people look; none of it
    changes the verdict. send() gives its problems."""
    delivery = prepared.delivery
    from checks import notify

    summary = report["summary"]
    channels = [("--notify", delivery.notify, lambda: notify.webhook(
                delivery.notify, report, notify.events(report, prior, prepared.escalate),
                delivery.notify_format == "json", budget, delivery.run_url)),
            ("--notify-github", delivery.github, lambda: notify.github(
                delivery.github, report, prior, delivery.github_api, delivery.token, delivery.instance, budget,
                delivery.run_url)),
            ("--ping", delivery.ping, lambda: [notify.ping(
                delivery.ping, "" if report["status"] in model.PASSING else "fail", "smoke.py %s on %s: %s, %d of %d "
                "passed%s" % (report["command"], report["host"], report["status"], summary["pass"] + summary["warn"],
                              summary["total"], "\n" + delivery.run_url if delivery.run_url else ""), budget)]),
            ("--push", delivery.push, lambda: [notify.push(
                delivery.push, RENDERERS["prometheus"](report), delivery.instance or report["host"],
                report.get("selection"), budget)])]
    return [(flag, send) for flag, wanted, send in channels if wanted]


def _say_problems(report: Dict[str, Any], quiet: bool, default_state: bool) -> None:
    """Each problem on stderr; under --quiet after a pass, a history line skipped (torn, not
    JSON) is not worth a mail, nor is a default state directory that cannot be written (the
    user did not ask for it: said in the report only), but a lost push, or a history in a
    directory the user chose, is."""
    for problem in report.get("problems", ()):
        history = problem.startswith("history:")
        unasked = history and (default_state or "cut short" in problem or "not a JSON" in problem)
        if not (quiet and report["exit_code"] == 0 and unasked):
            say("smoke.py: " + problem)
