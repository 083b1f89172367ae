"""Compile and load probe C sources with BCC, with a way to print the final program."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cauditd.resources import probes_dir

log = logging.getLogger(__name__)


class ProbeError(RuntimeError):
    """A probe could not be compiled, loaded or attached; the message says why."""


def source(files: Sequence[str], defines: Mapping[str, int | str]) -> str:
    """The C text BCC compiles (and `--dump-bpf` prints): `#define`s, then the named files of
    probes/ with their local `#include "..."` inlined once each.

    Inlined rather than included because BCC rewrites map calls and generates tracepoint
    argument structs only in the main file.
    """
    root = probes_dir()
    seen: set[str] = set()

    def inline(path: Path) -> str:
        out = []
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith('#include "'):
                name = stripped.split('"')[1]
                if name not in seen:
                    seen.add(name)
                    out.append(inline(root / name))
                continue
            out.append(line)
        return "\n".join(out)

    head = "".join(f"#define {name} {value}\n" for name, value in defines.items())
    return head + "\n".join(inline(root / name) for name in files)


def check_environment() -> None:
    """Fail early, with the reason, when this host cannot run BCC tracepoint probes."""
    if os.geteuid() != 0:
        raise ProbeError("eBPF probes need root (or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN)")
    if (
        not Path("/sys/kernel/tracing/events/sched").exists()
        and not Path("/sys/kernel/debug/tracing/events/sched").exists()
    ):
        raise ProbeError("tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing")
    build = Path(f"/lib/modules/{os.uname().release}/build")
    if not (build / "include").exists():
        raise ProbeError(f"kernel headers missing at {build} (run scripts/bootstrap.sh)")
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        raise ProbeError(f"BCC is not importable ({exc}): apt-get install python3-bpfcc") from exc


def load(files: Sequence[str], defines: Mapping[str, int | str]) -> Any:
    """Compile, load and auto-attach the TRACEPOINT_PROBEs of `files`; returns the BPF object."""
    check_environment()
    from bcc import BPF

    text = source(files, defines)
    try:
        return BPF(text=text, cflags=["-Wno-macro-redefined"])
    except Exception as exc:
        raise ProbeError(f"loading {', '.join(files)} failed: {exc}") from exc
