"""Compile and load probe C sources with BCC, with a way to print the final program."""

from __future__ import annotations

import ctypes
import ctypes.util
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


def tracepoint_exists(category: str, event: str) -> bool:
    """Whether the kernel has this tracepoint (tracefs, at either mount point)."""
    return any(Path(root, "events", category, event).is_dir()
               for root in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"))


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


def load(
    files: Sequence[str],
    defines: Mapping[str, int | str],
    tail_calls: Mapping[str, tuple[str, Sequence[str]]] | None = None,
) -> Any:
    """Compile, load and auto-attach the (RAW_)TRACEPOINT_PROBEs of `files`; returns the BPF
    object.

    `tail_calls` names, per program array, BCC's program type of its programs (that of the
    tracepoint that tail-calls them: "RAW_TRACEPOINT") and the programs to load into it in
    order, each verified on its own.
    """
    check_environment()
    from bcc import BPF

    text = source(files, defines)
    try:
        bpf = BPF(text=text, cflags=["-Wno-macro-redefined"])
        for array, (kind, programs) in (tail_calls or {}).items():
            table = bpf[array]
            for index, name in enumerate(programs):
                fd = bpf.load_func(name, getattr(BPF, kind)).fd
                table[ctypes.c_int(index)] = ctypes.c_int(fd)
    except Exception as exc:
        raise ProbeError(f"loading {', '.join(files)} failed: {exc}") from exc
    return bpf


def load_functions(bpf: Any, names: Sequence[str], prog_type: str) -> dict[str, int]:
    """Load functions of a compiled program that are not tracepoints (tc classifiers, say),
    as BCC's program type `prog_type` ("SCHED_CLS"); their fds by name."""
    from bcc import BPF

    try:
        kind = getattr(BPF, prog_type)
        return {name: int(bpf.load_func(name, kind).fd) for name in names}
    except Exception as exc:
        raise ProbeError(f"loading {', '.join(names)} as {prog_type} failed: {exc}") from exc


BPF_PROG_TEST_RUN = 10  # enum bpf_cmd


class _TestRunAttr(ctypes.Structure):
    """union bpf_attr's `test` member (include/uapi/linux/bpf.h)."""

    _fields_ = [
        ("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32), ("_pad", ctypes.c_uint32),
    ]  # fmt: skip


def prog_test_run(prog_fd: int, packet: bytes, repeat: int = 1) -> int:
    """Run a loaded SCHED_CLS program `repeat` times on `packet` (an Ethernet frame) by
    BPF_PROG_TEST_RUN, as the kernel would on a packet of the loopback device: its maps change
    as they would. Returns the mean nanoseconds per run; OSError when the kernel refuses."""
    from cauditd.probes.catalog import BY_NAME

    data = ctypes.create_string_buffer(packet, len(packet))
    out = ctypes.create_string_buffer(len(packet) + 256)
    attr = _TestRunAttr(prog_fd=prog_fd, data_in=ctypes.addressof(data),
                        data_size_in=len(packet), data_out=ctypes.addressof(out),
                        data_size_out=len(out), repeat=repeat)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(BY_NAME["bpf"].nr, BPF_PROG_TEST_RUN, ctypes.byref(attr),
                    ctypes.sizeof(attr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
    return int(attr.duration)


MADV_PAGEOUT = 21  # Linux 5.4+
COMPILER_LIBRARIES = ("libLLVM", "libclang")


def release_compiler_memory() -> None:
    """Give back what compiling the probes left behind; nothing is compiled after start-up.

    - the heap LLVM freed (~40 MB here), which glibc would keep for reuse: malloc_trim;
    - the compiler libraries' pages (~70 MB of libLLVM and libclang code): MADV_PAGEOUT lets
      the kernel reclaim them, and any later use faults them back in. Contents never change.
    Best effort: without glibc or on older kernels it does what it can and says so at debug.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name, use_errno=True)
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or not any(lib in fields[5] for lib in COMPILER_LIBRARIES):
                continue
            low, high = (int(bound, 16) for bound in fields[0].split("-"))
            if libc.madvise(low, high - low, MADV_PAGEOUT) != 0:
                log.debug("madvise(MADV_PAGEOUT) on %s: %s", fields[5],
                          os.strerror(ctypes.get_errno()))
                return
