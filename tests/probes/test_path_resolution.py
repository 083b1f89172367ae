"""The kernel-side path resolver (probes/vfs.h) against a table of tricky paths, in a real
container: each open's fd.name is the file the kernel opened, seen from the process's root,
and fd.nameraw the path as written. Without the kernel's layout (no BTF), paths are as written,
made absolute lexically: the second test says what that fallback can and cannot see."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cauditd.events import FileEvent
from tests.conftest import Containers, DaemonThread, daemon_config

pytestmark = pytest.mark.usefixtures("ebpf", "docker")

SET_UP = [
    "mkdir -p /tmp/a/b /tmp/deep /jail/etc /mnt/t",
    "ln -s /etc /tmp/e", "ln -s /tmp/e /tmp/e2", "ln -s ../../../etc/hostname /tmp/a/b/h",
    "echo j > /jail/etc/marker", "mount -t tmpfs cauditd-t /mnt/t", "echo m > /mnt/t/file",
    "d=/tmp/deep; for i in $(seq 1 40); do d=$d/d; done; mkdir -p $d; echo x > $d/leaf",
]
# (what `cat` opens, from where, the file the kernel opened as fd.name)
TABLE = [
    ("/etc/hostname", "/", "/etc/hostname"),  # a bind mount from the host: crossed
    ("/tmp/e/passwd", "/", "/etc/passwd"),  # a symlinked directory
    ("/tmp/e2/group", "/", "/etc/group"),  # a chain of two
    ("b/h", "/tmp/a", "/etc/hostname"),  # relative, through a relative symlink
    ("../../etc/passwd", "/tmp/a", "/etc/passwd"),
    ("/tmp/a/../../etc/./passwd", "/", "/etc/passwd"),
    ("//etc//passwd", "/", "/etc/passwd"),
    ("/proc/self/root/etc/passwd", "/", "/etc/passwd"),
    ("/proc/self/cwd/passwd", "/etc", "/etc/passwd"),
    ("/mnt/t/file", "/", "/mnt/t/file"),  # a mount made in the container
    ("./" * 140 + "etc/passwd", "/", "/etc/passwd"),  # past the 256 bytes of the raw path
]
DEEP_LEAF = "/tmp/deep" + "/d" * 40 + "/leaf"  # deeper than the walk (32): as written


def script() -> str:
    lines = [*SET_UP]
    for raw, cwd, _opened in TABLE:
        lines.append(f"cd {cwd} && cat '{raw}' >/dev/null")
    lines.append(f"cat {DEEP_LEAF} >/dev/null")
    lines.append("chroot /jail /bin/cat /etc/marker 2>/dev/null || true")  # not the jail's
    return "; ".join(lines) + "; true"


def opens_of(tmp_path_factory: pytest.TempPathFactory, kernel_structs: bool) -> list[FileEvent]:
    config = daemon_config(tmp_path_factory.mktemp("resolve"), kernel_structs=kernel_structs)
    runner = DaemonThread(config)
    runner.start()
    box = Containers()
    try:
        name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
        options = ("--network", "none", "--cap-add", "SYS_ADMIN", "--security-opt",
                   "apparmor=unconfined", "-v", "/bin/busybox:/jail/bin/cat:ro")
        result = box.run("sh", "-c", script(), name=name, options=options)
        assert result.returncode == 0, result.stderr
        cid = box.inspect_id(name)
        runner.wait_for(lambda ev: isinstance(ev, FileEvent) and ev.container.id == cid
                        and ev.raw_path == "/etc/marker")
        return [ev for ev in runner.events if isinstance(ev, FileEvent)
                and ev.container.id == cid and ev.type in ("open", "openat")]
    finally:
        box.remove_all()
        runner.stop()


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[FileEvent]]:
    yield opens_of(tmp_path_factory, kernel_structs=True)


@pytest.mark.parametrize(("raw", "cwd", "expected"), TABLE, ids=lambda x: str(x)[:40])
def test_fd_name_is_the_file_the_kernel_opened(resolved: list[FileEvent], raw: str, cwd: str,
                                               expected: str) -> None:
    written = raw[:255]  # the raw path is cut at 256 bytes with its NUL; the resolved one is not
    found = [ev for ev in resolved if ev.raw_path == written]
    assert found, [ev.raw_path for ev in resolved]
    assert {(ev.path, ev.resolved) for ev in found} == {(expected, True)}


def test_what_the_walk_cannot_finish_is_reported_as_written(resolved: list[FileEvent]) -> None:
    deep = [ev for ev in resolved if ev.raw_path == DEEP_LEAF]
    assert deep and {(ev.path, ev.resolved) for ev in deep} == {(DEEP_LEAF, False)}
    jailed = [ev for ev in resolved if ev.raw_path == "/etc/marker"]
    # the process's own root is the chroot: the file it sees as /etc/marker
    assert jailed and {ev.path for ev in jailed} == {"/etc/marker"}


def test_without_the_kernels_layout_paths_are_as_written(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    opens = opens_of(tmp_path_factory, kernel_structs=False)
    by_raw = {ev.raw_path: ev.path for ev in opens}
    assert not any(ev.resolved for ev in opens)
    assert by_raw["/tmp/a/../../etc/./passwd"] == "/etc/passwd"  # lexical normalization
    assert by_raw["../../etc/passwd"] == "/etc/passwd"  # joined with the cwd
    assert by_raw["/tmp/e/passwd"] == "/tmp/e/passwd"  # a symlink is not followed
    assert by_raw["/proc/self/root/etc/passwd"] == "/proc/self/root/etc/passwd"
