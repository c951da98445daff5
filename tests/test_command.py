"""The subcommand face (checks/command.py): one home, the same names on every command."""

import argparse
import ast
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))
import smoke  # noqa: E402
from checks import command  # noqa: E402
from checks.secrets import Secrets  # noqa: E402


def test_every_command_has_the_one_face_and_nothing_besides():
    assert list(smoke.COMMANDS) == ["health", "deploy", "heartbeat", "perf", "rollback", "all"]
    base = set(dir(command.Command))
    for name, (module, _) in smoke.COMMANDS.items():
        face = command.of(module)
        assert isinstance(face, command.Command) and face.NAME == name
        for hook in command.HOOKS:
            assert callable(getattr(face, hook)), (name, hook)
        extra = {attr for attr in vars(type(face)) if not attr.startswith("_")} - base
        assert not extra, (name, extra)  # a hook only one command has would be looked up, not called


def test_the_hooks_default_to_doing_nothing():
    face = command.All()
    parser = argparse.ArgumentParser()
    face.add_arguments(parser)
    args = parser.parse_args([])
    assert (face.flags_describe(args), face.from_args(args, Secrets()), face.plan(None), face.uses(None),
            face.notice(None), face.deadline(None, ["hourly"]), face.check_names(None, {})) == \
        (False, None, [], (), [], None, None)
    assert face.run(None, None).results == []
    assert (face.FLAGS, face.DEADLINE_HELP, face.ACTION) == ("", None, False)


def test_only_what_acts_is_an_action_and_only_heartbeat_owns_its_deadline():
    faces = {name: command.of(module) for name, (module, _) in smoke.COMMANDS.items()}
    assert [name for name, face in faces.items() if face.ACTION] == ["rollback"]
    assert [name for name, face in faces.items() if face.DEADLINE_HELP] == ["heartbeat"]
    assert all(face.FLAGS for name, face in faces.items() if name != "all")


FACE = set(command.HOOKS) | {"NAME", "FLAGS", "DEADLINE_HELP", "ACTION", "FLAGS_ADD_TO_CONFIG"}


@pytest.mark.parametrize("path", sorted((ROOT / "checks" / "cli").glob("*.py")) + [ROOT / "smoke.py"],
                         ids=lambda p: p.name)
def test_the_command_line_never_asks_a_module_whether_it_has_a_hook(path):
    """getattr(module, "deadline", None) is the optional hook the face replaced: call the face."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
            assert node.args[1].value not in FACE, "%s:%d: %s(..., %r)" % (path.name, node.lineno, node.func.id,
                                                                           node.args[1].value)
