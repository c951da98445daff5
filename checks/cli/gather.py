"""Prepare a run: flags and config become the specs and plans of the sections to run, the
selection, the settings of delivery, and the files to write, all checked before anything
runs. Every error here is a ConfigError (exit 2, nothing run).

Each section is its command's business (checks/command.py): this module calls the face,
each from_args once, and hands secrets over as an argument. The parsed flags are read,
never written.
"""

from __future__ import annotations

import collections
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs milliseconds at start-up
    from typing import Any, Dict, List, Optional, Tuple

from checks import ConfigError, command

_TOP_LEVEL = ("min_pass_rate", "state_dir", "history_limit", "escalate_after")  # keys that are not sections
FILE_SINKS = {"--junit": "junit", "--prom": "prometheus", "--tap": "tap", "--html": "html",
              "--output": "json"}  # --output last


class Prepared(collections.namedtuple("Prepared", "args secrets faces specs inner chosen skipped min_rate "
                                                  "section_rates state_dir history_limit escalate delivery sinks "
                                                  "deadline deadline_flag")):
    """Everything a run needs, decided: the flags (read only), the secrets, each section's face
    and spec (inner: those of the sections the command runs itself, rollback's verify), what
    was chosen and the skip results of the rest, the verdict's rates, where the history is
    kept, how to deliver, and the run's deadline."""

    __slots__ = ()


class Delivery(collections.namedtuple("Delivery", "notify notify_format github github_api token ping push "
                                                  "instance run_url")):
    """Where the report goes beyond files: each URL as it was checked (ASCII), the GitHub token,
    and the run's own page (--run-url, else the CI's) for the messages to link to."""

    __slots__ = ()

    def wanted(self) -> bool:
        return bool(self.notify or self.github or self.ping or self.push)


def prepare(args, commands, closed) -> Optional[Prepared]:
    """A Prepared run; None after --validate or --dry-run, which say what they found. closed
    names the standard streams that were closed at start."""
    from checks import runner
    from checks.cli.terminal import emit, say
    from checks.render import printable
    from checks.secrets import Secrets

    secrets = Secrets(names=args.secret)
    try:
        for name in args.secret:
            if not os.environ.get(name):  # a misspelt name would leave the real variable unmasked
                raise ConfigError("--secret %s: environment variable %s is not set" % (name, name))
            secrets.add(os.environ[name])
        faces, specs, inner, plans, rates, state, path = _sections(args, secrets, commands)
        delivery = _delivery(args, secrets)
        planned = [step for section in specs for step in plans[section]]
        _check_only(args.only, {step.name for step in planned})
        chosen, skipped = runner.select(planned, args.tag, args.skip_tag, args.only)
        if not chosen:
            tags = sorted({tag for step in planned for tag in step.tags})
            raise ConfigError("the selection matched none of the %d checks (--only and --tag must both match; "
                              "tags: %s)" % (len(planned), ", ".join(tags) or "none"))
        sinks = _sinks(args, path)  # --validate and --dry-run refuse what a run would refuse, and make nothing
        _hold_lock(args, take=not (args.validate or args.dry_run))
        if args.validate:
            say("config OK: %d check%s" % (len(planned), "" if len(planned) == 1 else "s"))
            return None
        if args.dry_run:
            emit("".join(printable(secrets.redact(_planned(step))) + "\n" for step in chosen), "stdout" in closed)
            return None
    except ConfigError as exc:
        raise ConfigError(secrets.redact(str(exc)))
    deadline, flag = _deadline(args, faces, specs)
    return Prepared(args, secrets, faces, specs, inner, chosen, skipped,
                    args.min_pass_rate if args.min_pass_rate is not None else 1.0,
                    {} if args.min_pass_rate is not None else rates, *state, delivery, sinks, deadline, flag)


def _sections(args, secrets, commands):
    """(faces, specs, inner, plans, min_pass_rates, (state dir, history limit, escalate_after),
    the config's path or None): the chosen command's sections from the config and its flags,
    and the sections another one runs, each loaded and checked."""
    from checks import config

    sections = tuple(name for name, (module, _) in commands.items() if module)
    face = command.of(commands[args.command][0])
    # Flags that say what to check on their own keep a config found implicitly out: it would add
    # checks nobody asked for (one named by --config is still read).
    path = args.config if face.flags_describe(args) else config.find(args.config)
    config.bound_loading(_deadline_flag(args, face))  # a targets URL a section names is fetched within it too
    doc = _config(path, secrets, _deadline_flag(args, face))
    chosen = sections if args.command == "all" else (args.command,)
    faces = {section: command.of(commands[section][0]) for section in chosen}
    specs = {}
    try:
        rates = _pass_rates(doc, sections)
        unknown = [key for key in doc if key not in sections + _TOP_LEVEL and not key.startswith("_")]
        if unknown:
            import difflib
            close = difflib.get_close_matches(str(unknown[0]), list(sections), n=1)
            raise ConfigError("unknown section %r%s (known: %s)" % (unknown[0], " (did you mean %r?)" % close[0]
                                                                     if close else "", ", ".join(sections)))
        for section in chosen:
            if section in doc and not (args.command == "all" and faces[section].ACTION):
                specs[section] = faces[section].load(_section_table(doc[section]), section)
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (path, exc))
    if args.command in sections:
        flagged = face.from_args(args, secrets, specs.get(args.command))
        if flagged is not None:
            specs[args.command] = flagged
    inner = _sections_run_by(args.command, face, specs, doc, path, sections, commands)
    faces = {section: command.of(commands[section][0]) for section in list(specs) + list(inner)}
    plans = {section: faces[section].plan(spec) for section, spec in specs.items()}
    if not any(plans.values()) and path:
        raise ConfigError("nothing to check: %s has no %s checks" % (path, " or ".join(chosen)))
    if not any(plans.values()):
        hint = "; or use %s" % face.FLAGS if face.FLAGS else ""
        raise ConfigError("nothing to check: no config found (--config FILE, $SMOKE_CONFIG, ./smoke.toml, "
                          "./smoke.json)%s" % hint)
    return faces, specs, inner, plans, rates, _state(doc, args, path), path


def _config(path: Optional[str], secrets, deadline: Optional[float]) -> Dict[str, Any]:
    """The config doc ({} without one); every error names the file: a field may be in several.
    One read from a FIFO or a pipe must come within the run's --deadline too."""
    from checks import config, fsio

    timeout = min(fsio.READ_TIMEOUT_S, deadline) if deadline else fsio.READ_TIMEOUT_S
    try:
        return config.load(path, secrets, read_timeout=timeout, per_section=True) if path else {}
    except ConfigError as exc:
        raise exc if str(exc).startswith(path) else ConfigError("%s: %s" % (path, exc))


def _sections_run_by(name: str, face, specs, doc, path, sections, commands) -> Dict[str, Any]:
    """{section: spec} of the sections the command runs itself (rollback's --run and verify),
    loaded and checked now, with its references to their checks."""
    inner = {}
    where = "%s: %s" % (path, name) if path else name
    for section in (face.uses(specs[name]) if name in specs else ()):
        if section not in sections or section == name:
            raise ConfigError("%s: %r is not a section it can run (known: %s)" % (
                where, section, ", ".join(s for s in sections if s != name)))
        if section not in doc:
            raise ConfigError("%s: runs the %s section, which the config does not have" % (where, section))
        try:
            inner[section] = command.of(commands[section][0]).load(_section_table(doc[section]), section)
        except ConfigError as exc:
            raise ConfigError("%s: %s" % (path, exc))
    if inner:  # its conditions on check.NAME, against what those sections run
        try:
            face.check_names(specs[name], {section: [step.name for step in command.of(
                commands[section][0]).plan(spec)] for section, spec in inner.items()})
        except ConfigError as exc:
            raise ConfigError("%s: %s" % (path, exc) if path else str(exc))
    return inner


def _section_table(table):
    """A section as its command loads it: min_pass_rate is the verdict's, read by _pass_rates."""
    return {key: value for key, value in table.items() if key != "min_pass_rate"} if isinstance(table, dict) else table


def _check_only(only, names) -> None:
    for name in only:
        if name not in names:
            import difflib
            close = difflib.get_close_matches(name, names, n=1)
            raise ConfigError("--only %s: no such check%s (known: %s)" % (
                name, "; did you mean %s?" % close[0] if close else "", ", ".join(sorted(names))))


def _planned(step) -> str:
    """One --dry-run line: what runs, what is expected, and every option that applies to it."""
    target = "" if step.name == "%s %s" % (step.kind, step.target) else step.target  # a default name says it
    return "%-10s %-24s %s  [%s]  %s" % (step.section, step.name, target, ", ".join(step.expect), step.options)


def _state(doc, args, path) -> Tuple[str, int, int]:
    """(state directory, history limit, escalate_after): the flags, else the config's, else the defaults."""
    from checks import state
    from checks.config import Fields

    if args.state_dir is not None and not args.state_dir.strip():
        raise ConfigError("--state-dir: give a directory")
    try:
        top = Fields(doc, "")
        chosen = args.state_dir or top.path("state_dir", None)
        limit = top.integer("history_limit", state.DEFAULT_LIMIT, 1, state.MAX_LIMIT)
        escalate = args.escalate_after or top.integer("escalate_after", state.DEFAULT_ESCALATE_AFTER, 1, 1000000)
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (path, exc) if path else str(exc))
    if chosen:  # one asked for must be usable; the default that is not is a problem line of the run
        _private(chosen, "--state-dir" if args.state_dir else "%s: state_dir" % path, args.validate or args.dry_run)
    return chosen or state.default_dir(), limit, escalate


def _private(directory: str, where: str, looking: bool) -> None:
    """A state directory asked for is ours alone by fsio's rule (made now for a run; only
    looked at for --validate and --dry-run, where a missing one is made later), else exit 2."""
    from checks import fsio

    try:
        fsio.private_dir(directory, make=not looking)
    except FileNotFoundError:
        if not looking:
            raise ConfigError("%s %s: cannot be made" % (where, directory))
    except fsio.Refused as exc:
        raise ConfigError("%s: %s" % (where, fsio.why(exc)))
    except OSError as exc:
        raise ConfigError("%s %s: %s" % (where, directory, fsio.why(exc)))


def _pass_rates(doc, sections) -> Dict[str, float]:
    """{section: min_pass_rate} from the config: a section's own, else the top level's."""
    from checks.config import Fields

    top = Fields(doc, "").number("min_pass_rate", None, 0, 1)
    rates = {}
    for section in sections:
        try:
            table = doc.get(section)
        except ConfigError:  # a variable it uses is unset: said if the section is run, which it cannot be
            continue
        own_rate = Fields(table, section).number("min_pass_rate", None, 0, 1) if isinstance(table, dict) else None
        if own_rate is not None or top is not None:
            rates[section] = own_rate if own_rate is not None else top
    return rates


def _delivery(args, secrets) -> Delivery:
    """Where the report is sent, refused before anything runs when it could not be; a webhook's
    URL is its credential, and the token a secret."""
    import re

    token, api = None, None
    if args.notify_github is not None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", args.notify_github):
            raise ConfigError("--notify-github %s: expected OWNER/REPO" % args.notify_github)
        token = os.environ.get("GITHUB_TOKEN")
        if not token:
            raise ConfigError("--notify-github: set GITHUB_TOKEN to a token that may open issues in %s"
                              % args.notify_github)
        secrets.add(token)
        api = args.github_api or os.environ.get("GITHUB_API_URL") or "https://api.github.com"
    urls = {}
    for flag, url in (("--notify", args.notify), ("--ping", args.ping), ("--push", args.push), ("--github-api", api),
                      ("--run-url", args.run_url)):
        if url is None:
            continue
        from checks.probes import http
        http.check_url(http.ascii_url(url), flag)
        if flag in ("--notify", "--ping"):  # the path, query and user are the credential; the host is said
            secrets.add_url(url)
            secrets.add_url(http.ascii_url(url))
        urls[flag] = http.ascii_url(url)  # sent as it was checked
    link = urls.get("--run-url")
    if link is None and (args.notify or args.notify_github or args.ping):
        link = _ci_run_url()
    return Delivery(urls.get("--notify"), args.notify_format, args.notify_github, urls.get("--github-api"), token,
                    urls.get("--ping"), urls.get("--push"), args.instance, link)


def _ci_run_url() -> Optional[str]:
    """The CI's page of this run, when its variables make an http(s) URL (else none: a CI's
    odd variable never stops the run)."""
    from checks import notify
    from checks.probes import http

    link = notify.run_url(os.environ)
    if link is None:
        return None
    try:
        http.check_url(http.ascii_url(link), "the CI's run URL")
    except ConfigError:
        return None
    return http.ascii_url(link)


def _sinks(args, config_path: Optional[str]) -> List[Tuple[str, str]]:
    """[(flag, path)] of the reports to write to files, --output last, each path checked now
    as every flag that writes a file is (sinks.check_report: never a config), and none written
    by two flags."""
    from checks import sinks

    found, written_by = [], {}
    for flag in FILE_SINKS:
        path = getattr(args, flag[2:])
        if path is None:
            continue
        sinks.check_report(path, flag, config_path)
        if os.path.realpath(path) in written_by and not path.startswith("/dev/"):
            raise ConfigError("%s %s: %s writes there too: give each report its own file"
                              % (flag, path, written_by[os.path.realpath(path)]))
        written_by[os.path.realpath(path)] = flag
        found.append((flag, path))
    return found


def _hold_lock(args, take: bool = True) -> None:
    """--instance, when given, names something; --lock: taken now, before --jitter (a bad path
    is said at once, and a run already going is found at once), and held until this process
    ends: the kernel lets it go, even after kill -9. Without take (--validate, --dry-run): the
    path is checked as a run would (taken for a moment if it is there, held by another run or
    not), and no file is made."""
    if args.lock is not None and not args.lock.strip():
        raise ConfigError("--lock: give a file name")
    if args.instance is not None and not args.instance.strip():
        raise ConfigError("--instance: give a name")
    if args.lock:
        from checks import fsio, state
        try:
            if take or os.path.lexists(args.lock):
                held = state.lock(args.lock)
                if not take:
                    os.close(held)
            else:
                fsio.check_writable(args.lock)
        except state.LockHeld:
            if take:
                raise
        except fsio.Refused as exc:
            raise ConfigError("--lock: %s" % fsio.why(exc))
        except OSError as exc:
            raise ConfigError("--lock %s: %s" % (args.lock, fsio.why(exc)))


def _deadline_flag(args, face) -> Optional[float]:
    """--deadline, when it bounds the run (a command that takes it as its own does not)."""
    return None if face.DEADLINE_HELP else args.deadline


def _deadline(args, faces, specs) -> Tuple[Optional[float], str]:
    """(the run's deadline, what set it, as messages name it). A command that takes --deadline
    as its own (heartbeat's detection deadline) gets it from from_args; with --tag, a tier's own."""
    command_face = faces.get(args.command)
    if command_face is not None and command_face.DEADLINE_HELP:
        return None, "--deadline"
    if args.deadline is not None:
        return args.deadline, "--deadline"
    tiers = [faces[section].deadline(spec, args.tag) for section, spec in specs.items()] if args.tag else []
    deadline = min([d for d in tiers if d is not None], default=None)
    return deadline, "the tier's deadline" if deadline is not None else "--deadline"

