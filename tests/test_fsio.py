"""fsio: the one way smoke.py touches files; every wait has a deadline its caller sets."""

import grp
import os
import pwd
import stat
import threading
import time

import pytest

from checks import fsio, sinks
from conftest import NOBODY, as_root, planted_link, shared_dir


def test_a_replacement_is_whole_or_absent_and_keeps_its_mode(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    fsio.replace(str(path), b"new", 0o640)
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o640
    staged = fsio.Replacement(str(path), 0o600)
    staged.reserve(1 << 20)
    assert path.read_text() == "new"  # nothing is seen until the commit
    staged.commit(b"newer")
    assert path.read_text() == "newer" and os.listdir(tmp_path) == ["report.json"]
    staged = fsio.Replacement(str(path))
    staged.abort()
    assert os.listdir(tmp_path) == ["report.json"]


def test_a_full_device_is_found_when_staged_not_when_written(tmp_path):
    with pytest.raises(OSError) as caught:
        sinks.stage("/dev/full", 100)
    assert "No space left" in fsio.why(caught.value)


def test_an_append_ends_a_torn_line_first_and_refuses_a_fifo(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a": 1}\n{"torn')
    fsio.append(str(path), b'{"b": 2}\n', line=True)
    assert path.read_bytes() == b'{"a": 1}\n{"torn\n{"b": 2}\n'
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    started = time.monotonic()
    with pytest.raises(OSError) as caught:
        fsio.append(str(fifo), b"x\n")
    assert "a FIFO, not a file" in fsio.why(caught.value) and time.monotonic() - started < 1


def test_a_new_private_file_is_never_one_already_there(tmp_path):
    fsio.create(str(tmp_path / "key"), b"secret", 0o600)
    assert stat.S_IMODE((tmp_path / "key").stat().st_mode) == 0o600
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    for name in ("key", "link"):
        with pytest.raises(FileExistsError):
            fsio.create(str(tmp_path / name), b"x")
    assert not (tmp_path / "elsewhere").exists()


def test_reads_are_bounded_in_size_and_refuse_what_is_not_a_file(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * 1000)
    assert fsio.read_head(str(path), 10) == b"x" * 10
    assert fsio.read_tail(str(path), 10) == (1000, b"x" * 10)
    assert len(fsio.read_bounded(str(path), 100)) == 101  # one more than the cap: "too big" can be told
    for reader in (lambda p: fsio.read_head(p, 10), lambda p: fsio.read_tail(p, 10)):
        with pytest.raises(OSError) as caught:
            reader("/dev/zero")
        assert fsio.why(caught.value) == "not a regular file"
        with pytest.raises(IsADirectoryError):
            reader(str(tmp_path))


def test_a_fifo_nobody_writes_to_is_given_up_at_the_callers_deadline(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    writer_done = threading.Event()

    def writer():  # opens, writes a little, never closes within the deadline
        fd = os.open(str(fifo), os.O_WRONLY)
        os.write(fd, b"partial")
        writer_done.wait(5)
        os.close(fd)

    threading.Thread(target=writer, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(OSError) as caught:
        fsio.read_bounded(str(fifo), 1000, timeout=0.3)
    writer_done.set()
    assert "within 0.3s" in fsio.why(caught.value) and 0.3 <= time.monotonic() - started < 2


def test_a_fifo_without_a_reader_is_given_up_at_the_callers_deadline(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    started = time.monotonic()
    with pytest.raises(OSError) as caught:
        sinks.stage(str(fifo), 100, timeout=0.3)
    assert fsio.why(caught.value) == "no process opened the FIFO to read within 0.3s"
    assert 0.3 <= time.monotonic() - started < 2
    assert sinks.WRITE_TIMEOUT_S == fsio.WRITE_TIMEOUT_S == 10.0  # the default, when the run has no deadline


def test_a_reader_that_stops_reading_is_given_up_and_a_signal_stops_the_write_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    holder = os.open(str(fifo), os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads
    try:
        staged = sinks.stage(str(fifo), 100, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(OSError) as caught:
            staged.write(b"x" * (1 << 20), timeout=0.3)
        assert "took more than 0.3s" in fsio.why(caught.value) and time.monotonic() - started < 2
        staged = sinks.stage(str(fifo), 100)
        started = time.monotonic()
        with pytest.raises(OSError) as caught:
            staged.write(b"x" * (1 << 20), stop=lambda: time.monotonic() - started > 0.2)
        assert fsio.why(caught.value) == "interrupted" and time.monotonic() - started < 2
    finally:
        os.close(holder)


# --- the rules: another local user cannot steer a write ------------------------------------

@as_root
@pytest.mark.parametrize("write", [
    lambda p: fsio.replace(p, b"x"), lambda p: fsio.append(p, b"x"), lambda p: os.close(fsio.open_lock(p)),
    lambda p: fsio.create(p, b"x"), lambda p: sinks.stage(p, 10), lambda p: fsio.check_writable(p),
    lambda p: fsio.private_dir(p)], ids=["replace", "append", "lock", "create", "stage", "check", "dir"])
def test_another_users_link_is_never_written_through(tmp_path, write):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = planted_link(shared_dir(tmp_path) / "report.json", victim)
    with pytest.raises(OSError) as caught:
        write(str(link))
    assert victim.read_text() == "precious" and link.is_symlink()
    if not isinstance(caught.value, FileExistsError):  # create: O_EXCL never follows any link
        assert isinstance(caught.value, fsio.Refused) and "a link of user 65534" in fsio.why(caught.value)


@as_root
def test_a_link_of_another_user_on_the_way_is_refused_too(tmp_path):
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    planted_link(shared_dir(tmp_path) / "dir", elsewhere)
    with pytest.raises(fsio.Refused):
        fsio.replace(str(tmp_path / "shared" / "dir" / "passwd"), b"x")
    assert os.listdir(str(elsewhere)) == []


@as_root
def test_another_users_file_in_a_directory_others_can_write_is_neither_replaced_nor_appended(tmp_path):
    theirs = shared_dir(tmp_path) / "smoke.lock"
    theirs.write_text("theirs")
    os.chown(str(theirs), NOBODY, NOBODY)
    for write in (lambda p: fsio.replace(p, b"x"), lambda p: fsio.append(p, b"x"),
                  lambda p: os.close(fsio.open_lock(p))):
        with pytest.raises(fsio.Refused) as caught:
            write(str(theirs))
        assert "belongs to user 65534, in a directory others can write" in fsio.why(caught.value)
    assert theirs.read_text() == "theirs"
    ours = tmp_path / "shared" / "ours.json"
    fsio.replace(str(ours), b"ours")  # a new file, or one of ours, in /tmp is fine
    fsio.append(str(ours), b"!")
    assert ours.read_text() == "ours!"


def test_our_own_links_are_followed_and_kept(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    fsio.replace(str(link), b"new")
    fsio.append(str(link), b"er")
    assert link.is_symlink() and target.read_text() == "newer"


def test_a_directory_anyone_may_change_is_refused_a_sticky_one_is_not(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # not sticky: anyone could rename our file away and put theirs
    with pytest.raises(fsio.Refused) as caught:
        fsio.replace(str(open_dir / "r.json"), b"x")
    assert "can be changed by other users (mode 0777, group 0, not sticky)" in fsio.why(caught.value)
    fsio.replace(str(shared_dir(tmp_path) / "r.json"), b"x")


@as_root
def test_a_run_directory_must_be_ours_alone(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(str(theirs), NOBODY, NOBODY)
    with pytest.raises(fsio.Refused) as caught:
        fsio.private_dir(str(theirs))
    assert "belongs to user 65534" in fsio.why(caught.value)
    writable = tmp_path / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    with pytest.raises(fsio.Refused) as caught:
        fsio.private_dir(str(writable))
    assert "can be written by other users (mode 0777, group 0)" in fsio.why(caught.value)


def test_a_run_directory_is_made_ours_alone_with_its_parents(tmp_path):
    made = tmp_path / "a" / "b" / "state"
    fsio.private_dir(str(made))
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o700 for path in (made, made.parent, made.parent.parent))
    fsio.private_dir(str(made))  # once it is there, it is used as it is
    with pytest.raises(FileNotFoundError):
        fsio.private_dir(str(tmp_path / "missing"), make=False)


# --- who else can change a directory: its owner, its group's members, and what they can swap ---

def as_user(uid, gid, work, dir_fd=None):
    """work(dir_fd) run in a forked child with uid and gid (and no other group); its exit code:
    0 when it returned True. dir_fd was opened by us, so the test's own root-only directories on
    the way do not stop the child."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os._exit(0 if work(dir_fd) else 1)
        except BaseException:
            os._exit(2)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) if hasattr(os, "waitstatus_to_exitcode") \
        else os.waitpid(pid, 0)[1] >> 8


@as_root
@pytest.mark.parametrize("mode", [0o755, 0o1777], ids=["private", "sticky"])
def test_a_directory_another_user_owns_is_one_they_can_change(tmp_path, mode):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(str(theirs), NOBODY, NOBODY)
    theirs.chmod(mode)
    ours = theirs / "ours.log"
    ours.write_text("ours\n")  # root's file: still theirs to rename away, even in a sticky directory
    fd = os.open(str(theirs), os.O_RDONLY)
    try:
        assert as_user(NOBODY, NOBODY, lambda d: os.rename("ours.log", "gone", src_dir_fd=d, dst_dir_fd=d) is None,
                       fd) == 0
        os.rename("gone", "ours.log", src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
    for write in (lambda p: fsio.replace(p, b"x"), lambda p: fsio.append(p, b"x"),
                  lambda p: os.close(fsio.open_lock(p)), fsio.check_writable, lambda p: sinks.stage(p, 10)):
        for path in (ours, theirs / "new.json"):
            with pytest.raises(fsio.Refused) as caught:
                write(str(path))
            assert "is in a directory that belongs to user 65534, who may change it" in fsio.why(caught.value)
    assert ours.read_text() == "ours\n" and sorted(os.listdir(str(theirs))) == ["ours.log"]


@as_root
def test_a_group_writable_directory_is_others_unless_the_group_is_ours_alone(tmp_path):
    """Group root holds no one but root here, so root's 0775 root:root directory (a checkout
    made with umask 002) is root's alone; a group of other users (nogroup) is others', and so
    is a group another user's process has (nobody with gid 0 writes there: smoke.py refuses
    it when its records say who may be in the group)."""
    root_group = grp.getgrgid(0)
    if root_group.gr_mem or [u.pw_name for u in pwd.getpwall() if u.pw_gid == 0] != ["root"]:
        pytest.skip("group root has other members here")
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o775)  # root:root, as `mkdir -m 0775` or umask 002 leaves it
    fsio.replace(str(mine / "r.json"), b"x")
    fsio.private_dir(str(mine / "state"))
    theirs = tmp_path / "gst"
    theirs.mkdir()
    os.chown(str(theirs), 0, grp.getgrnam("nogroup").gr_gid)
    theirs.chmod(0o775)
    for write in (lambda p: fsio.replace(p + "/r.json", b"x"), lambda p: fsio.append(p + "/history.jsonl", b"x"),
                  fsio.private_dir, lambda p: fsio.private_dir(p + "/state")):
        with pytest.raises(fsio.Refused) as caught:
            write(str(theirs))
        assert "(mode 0775, group %d" % grp.getgrnam("nogroup").gr_gid in fsio.why(caught.value)
    # a user's private group (its name, no other member) holds no one else; another group does
    private = [u for u in pwd.getpwall() if u.pw_uid not in (0, NOBODY) and _private_group(u)]
    if not private:
        pytest.skip("no user with a private group here to try the other half with")
    user = private[0]
    for gid, allowed in ((user.pw_gid, True), (grp.getgrnam("users").gr_gid, False), (0, False)):
        made = tmp_path / ("g%d" % gid)
        made.mkdir()
        os.chown(str(made), user.pw_uid, gid)
        made.chmod(0o775)
        fd = os.open(str(made), os.O_RDONLY)
        try:
            assert as_user(user.pw_uid, user.pw_gid, lambda d: fsio._others_can_write(os.fstat(d)) != allowed,
                           fd) == 0, (user.pw_name, gid)
        finally:
            os.close(fd)


def _private_group(user):
    try:
        group = grp.getgrgid(user.pw_gid)
    except KeyError:
        return False
    return group.gr_name == user.pw_name and not group.gr_mem and \
        [u.pw_name for u in pwd.getpwall() if u.pw_gid == user.pw_gid] == [user.pw_name]


@as_root
@pytest.mark.parametrize("owner, group, mode", [(NOBODY, NOBODY, 0o755), (NOBODY, NOBODY, 0o1777), (0, 0, 0o777),
                                                (0, NOBODY, 0o775)], ids=["theirs", "theirs-sticky", "open", "a-group"])
def test_a_run_directory_under_one_another_user_can_change_is_refused(tmp_path, owner, group, mode):
    above = tmp_path / "above"
    above.mkdir()
    os.chown(str(above), owner, group)
    above.chmod(mode)
    ours = above / "state"
    ours.mkdir(0o700)  # root's, 0700: ours alone, but another user may rename it away and put theirs
    for use in (fsio.private_dir, lambda p: fsio.private_dir(p, make=False), fsio.steady_dir,
                lambda p: fsio.private_dir(p + "/deeper"), lambda p: fsio.steady_dir(p + "/../state")):
        with pytest.raises(fsio.Refused) as caught:
            use(str(ours))
        reason = "belongs to user 65534, who may change it" if owner else \
            "can be changed by other users (mode %04o, group %d, not sticky)" % (mode, group)
        assert "%s %s: another user could swap what is below it" % (above, reason) in fsio.why(caught.value)
    assert os.listdir(str(ours)) == []
    fsio.private_dir(str(shared_dir(tmp_path) / "state"))  # sticky and root's, as /tmp: no one renames ours there
    fsio.steady_dir(str(tmp_path / "shared" / "state"))


@as_root
def test_a_lock_file_is_ours_alone_to_open_so_no_one_else_can_hold_it(tmp_path):
    """flock needs only a descriptor: a 0644 lock in a 0755 directory could be opened and held by
    any user, stopping every run. New locks are 0600, and an older 0644 one of ours is made so."""
    import subprocess

    from checks import fsio

    fresh, old = tmp_path / "fresh.lock", tmp_path / "old.lock"
    tmp_path.chmod(0o755)
    old.write_text("")
    old.chmod(0o644)
    for path in (fresh, old):
        fd = fsio.open_lock(str(path))
        os.close(fd)
        assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
        held = subprocess.run(["/usr/bin/python3", "-c", "import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], "
                               "os.O_RDONLY), fcntl.LOCK_EX | fcntl.LOCK_NB)", str(path)], capture_output=True,
                              text=True, preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)), cwd="/")
        assert held.returncode == 1 and "Permission denied" in held.stderr, held.stderr


def test_two_runs_making_one_state_directory_at_once_both_go_on(tmp_path):
    """Two cron runs starting together with a fresh --state-dir: the one whose mkdir comes second
    finds the directory made, judges it as any found, and goes on (it was exit 2, File exists)."""
    from checks import fsio

    for attempt in range(40):
        path = str(tmp_path / ("s%d" % attempt) / "deep" / "state")
        errors, ready = [], threading.Barrier(4)

        def make():
            ready.wait()
            try:
                fsio.private_dir(path)
            except OSError as exc:
                errors.append(exc)
        threads = [threading.Thread(target=make) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and stat.S_IMODE(os.stat(path).st_mode) == 0o700
