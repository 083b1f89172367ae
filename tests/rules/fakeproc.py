"""A fake /proc tree for field tests: status, loginuid, environ, stat, exe, socket fds and the
TCP table, and a root with /etc/passwd and /etc/group, as the kernel lays them out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DOCKER_CAPS = 0xA80425FB  # Docker's default capability set


@dataclass
class FakeProc:
    root: Path

    def process(self, pid: int, *, vpid: int, vsid: int = 1, vpgid: int | None = None,
                caps: int = DOCKER_CAPS, loginuid: int = 0xFFFFFFFF,
                env: tuple[str, ...] = (), start_ticks: int = 100,
                rootfs: Path | None = None, exe: Path | None = None,
                sockets: tuple[int, ...] = (), tcp: tuple[int, ...] = ()) -> Path:
        """`sockets`: inodes of the sockets its fds 3... hold; `tcp`: the inodes its network
        namespace's TCP table lists."""
        base = self.root / str(pid)
        base.mkdir(parents=True)
        pgid = vpgid if vpgid is not None else vpid
        (base / "status").write_text(
            f"Name:\tx\nNStgid:\t{pid}\t{vpid}\nNSpid:\t{pid}\t{vpid}\nNSpgid:\t{pid}\t{pgid}\n"
            f"NSsid:\t{pid}\t{vsid}\nCapInh:\t0000000000000000\nCapPrm:\t{caps:016x}\n"
            f"CapEff:\t{caps:016x}\n")
        (base / "loginuid").write_text(str(loginuid))
        (base / "environ").write_bytes(b"".join(e.encode() + b"\0" for e in env))
        rest = " ".join(["0"] * 18 + [str(start_ticks)] + ["0"] * 30)
        (base / "stat").write_text(f"{pid} (x) S {rest}\n")
        if rootfs is not None:
            (base / "root").symlink_to(rootfs)
        if exe is not None:
            (base / "exe").symlink_to(exe)
        (base / "fd").mkdir()
        for fd, inode in enumerate(sockets, start=3):
            (base / "fd" / str(fd)).symlink_to(f"socket:[{inode}]")
        (base / "net").mkdir()
        rows = "".join(f"   {i}: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 "
                       f"00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
                       for i, inode in enumerate(tcp))
        (base / "net" / "tcp").write_text(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
            "  timeout inode\n" + rows)
        return base


def rootfs(path: Path, passwd: str, group: str) -> Path:
    """A container root with /etc/passwd and /etc/group."""
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "passwd").write_text(passwd)
    (path / "etc" / "group").write_text(group)
    return path
