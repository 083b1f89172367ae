"""The host's container runtime executables (runc, crun, shims, docker-init), by identity.

The rules' exceptions for container runtimes (runc mounting /proc, joining namespaces, setting up
the container's stdio) must not be earned by a binary merely *named* runc inside a container.
A process is the runtime when the file it runs is one of these host files (same device and
inode, as the kernel reports the executable), or lives on a mount of another mount namespace
than the process's own under a runtime's name (a runtime installed where this search does not
look, run inside the container's namespaces).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RUNTIME_NAMES = frozenset((
    "runc", "crun", "runsc", "youki", "conmon", "containerd", "containerd-shim",
    "containerd-shim-runc-v1", "containerd-shim-runc-v2", "dockerd", "docker-init", "catatonit",
))  # fmt: skip
SEARCH_DIRS = (
    "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin",
    "/usr/libexec/docker", "/usr/libexec/podman", "/usr/lib/cri-o-runc/sbin", "/opt/bin",
)  # fmt: skip

Identity = tuple[int, int]  # (device as the kernel numbers it, inode)


def kernel_dev(st_dev: int) -> int:
    """A stat() device number as the kernel's dev_t (major << 20 | minor), which probes see."""
    return os.major(st_dev) << 20 | os.minor(st_dev)


@dataclass(frozen=True, slots=True)
class RuntimeBinaries:
    """Identities of the runtime executables found on the host."""

    identities: frozenset[Identity] = frozenset()

    @classmethod
    def find(cls, dirs: tuple[str, ...] | None = None) -> RuntimeBinaries:
        """Stat every runtime name in the search directories and $PATH (symlinks followed)."""
        search = dirs if dirs is not None else SEARCH_DIRS + tuple(
            os.environ.get("PATH", "").split(os.pathsep))
        found: set[Identity] = set()
        for directory in dict.fromkeys(d for d in search if d):
            for name in RUNTIME_NAMES:
                try:
                    st = (Path(directory) / name).stat()
                except OSError:
                    continue
                found.add((kernel_dev(st.st_dev), st.st_ino))
        return cls(frozenset(found))

    def is_runtime(self, dev: int, ino: int, exe: str, foreign_mnt_ns: bool) -> bool:
        """Whether an executable (as the kernel named it) is the host's container runtime."""
        if (dev, ino) in self.identities:
            return True
        return foreign_mnt_ns and exe.rsplit("/", 1)[-1] in RUNTIME_NAMES
