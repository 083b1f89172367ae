"""The syscall-side probes as one component: load, attach, feed the cgroup maps, count losses."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cauditd import metrics
from cauditd.config import ProbesConfig
from cauditd.events import Event
from cauditd.flood import SheddingDecoder
from cauditd.probes import bpf as bpfmod
from cauditd.probes import catalog, records
from cauditd.probes.layout import KernelLayout
from cauditd.probes.mmap_ringbuf import open_reader
from cauditd.probes.ringbuf import Reader

if TYPE_CHECKING:
    from cauditd.rules.prefilter import KernelFilters

log = logging.getLogger(__name__)

PROBE_NAME = "syscall"
SOURCES = ("syscalls.c", "process.c")
IO_URING_SOURCE = "io_uring.c"  # with the kernel's layout and io_uring's tracepoints
IO_URING_TRACEPOINTS = ("io_uring_submit_req", "io_uring_complete")
TAIL_CALLS = {  # with the kernel's layout only
    "exit_handlers": ("RAW_TRACEPOINT", ("open_exit",)),
    "exec_handlers": ("TRACEPOINT", ("env_walk_step", "exec_emit")),
}
CGROUP_TRACKED = 1
CGROUP_IGNORED = 2
SETTING_TRACK_HOST, SETTING_OPEN_FILTER, SETTING_OPEN_ANY_MODES = 0, 1, 2
SETTING_CONNECT_FILTER, SETTING_DUP_SOCKETS_ONLY = 3, 4
SETTING_OPEN_FAILED, SETTING_OPEN_SETID, SETTING_PIPES, SETTING_LIFECYCLE = 5, 6, 7, 8
SETTING_SOCKET_FILTER, SETTING_SOCKETS_ALWAYS, SETTING_SOCKETS_ON_STDIO = 9, 10, 11
SETTING_ENV_NAMES, SETTING_ACCEPT_FILTER = 12, 13
ENV_KEY_LEN = 16  # bytes of "NAME=" that key env_names (probes/process.c) ...
ENV_KEY_SHARED = 0xFF  # ... and its value for a key of several names
ENV_NAMES_MAX = 64  # keys it holds (a bit each in the walk's u64 of names found)
FILTERS = ("open", "connect", "dup", "socket", "accept")  # the kernel's filtered[], in order
UNFILTERED = {"open": "every open", "connect": "every connect", "dup": "every dup onto fds 0-2",
              "socket": "every socket", "accept": "every accept"}


class SyscallProbes:
    """Loads probes/process.c (and friends) and delivers decoded events in batches.

    `on_events` is called on the event loop with each batch. The cgroup maps decide in the
    kernel which processes are traced: `track`/`ignore` a cgroup, `add_watch_root` for a
    parent under which new cgroups pass until classified.
    """

    def __init__(self, config: ProbesConfig, on_events: Callable[[list[Event]], None]) -> None:
        self._config = config
        self._on_events = on_events
        self._layout: KernelLayout | None = None
        self._layout_read = False
        self._bpf: Any = None
        self._reader: Reader | None = None
        self._lost_seen = 0
        self._filtered_seen = dict.fromkeys(FILTERS, 0)
        self._syscalls: set[str] | None = None
        self._filters: KernelFilters | None = None
        self._env_names: frozenset[str] | None = None
        self.shed: Counter[int] = Counter()  # records shed per cgroup id (flood.py), ever
        self._decode: records.Decoder = records.decode

    @property
    def layout(self) -> KernelLayout | None:
        """The kernel's struct layouts the probes read (None: off, no BTF, or refused)."""
        if not self._layout_read:
            self._layout_read = True
            self._layout = KernelLayout.read() if self._config.kernel_structs else None
        return self._layout

    @property
    def defines(self) -> dict[str, int | str]:
        """What the C code is compiled with: ring size, syscall numbers and, when the kernel's
        BTF gave them, its struct layouts (resolved paths, fd kinds, compat syscalls)."""
        found = {"RINGBUF_PAGES": self._config.ringbuf_pages, "ENV_CAPTURE": records.ENV_CAPTURE,
                 "ENV_FOUND_SLOTS": records.ENV_FOUND_SLOTS,
                 "ENV_FOUND_LEN": records.ENV_FOUND_LEN, "ENV_KEY_LEN": ENV_KEY_LEN,
                 "ENV_KEY_SHARED": ENV_KEY_SHARED, "ENV_NAMES_MAX": ENV_NAMES_MAX,
                 **catalog.nr_defines()}
        if self.layout is not None:
            found.update(self.layout.defines())
        return found

    @property
    def enabled_syscalls(self) -> set[str]:
        """The syscalls whose records are emitted now (the always-on ones included)."""
        return {name for name, (_on, emit) in catalog.plan(self._syscalls).items() if emit}

    def set_syscalls(self, names: set[str] | None) -> None:
        """Emit only these syscalls (the rules' needed_syscalls; None: every known one).

        Exec, fork, exit and chdir stay on for the process table; unknown names are ignored.
        Forks and exits are sent at once only when a name asks for them; else the kernel holds
        each fork until its process is named by a record of its own (probes/lifecycle.h).
        Takes effect at once when loaded, else at start.
        """
        self._syscalls = None if names is None else set(names)
        if self._bpf is not None:
            self._write_specs()

    def _write_specs(self) -> None:
        eager = catalog.lifecycle_wanted(self._syscalls)
        self._bpf["settings"][ctypes.c_int(SETTING_LIFECYCLE)] = ctypes.c_uint64(int(eager))
        table = self._bpf["syscall_spec"]
        for nr, fields in catalog.spec_entries(self._syscalls, self.layout is not None).items():
            table[ctypes.c_int(nr)] = table.Leaf(**fields)
        if self.layout is not None:
            calls = self._bpf["socketcall_native"]
            for call, native in catalog.socketcall_entries(self._syscalls).items():
                calls[ctypes.c_int(call)] = ctypes.c_uint32(native)

    def set_kernel_filters(self, filters: KernelFilters | None) -> None:
        """Emit only the opens, connects, dups and sockets `filters` lets through (None: all).

        Takes effect at once when loaded, else at start. While the tables change every call
        passes, so a reload never loses one a rule of either set could match.
        """
        self._filters = filters
        if self._bpf is not None:
            self._write_filters()

    def _write_filters(self) -> None:
        settings = self._bpf["settings"]
        for setting in (SETTING_OPEN_FILTER, SETTING_CONNECT_FILTER, SETTING_DUP_SOCKETS_ONLY,
                        SETTING_OPEN_FAILED, SETTING_OPEN_SETID, SETTING_PIPES,
                        SETTING_SOCKET_FILTER, SETTING_ACCEPT_FILTER):
            settings[ctypes.c_int(setting)] = ctypes.c_uint64(0)
        for name in ("open_prefixes", "open_names", "connect_ports", "connect_nets"):
            self._bpf[name].clear()
        filters = self._filters
        if filters is None:
            return
        opens, connects = filters.opens, filters.connects
        # Without the kernel's layout no filter can tell a FIFO or a piped process: the
        # filters a rule on pipes needs stay off.
        can_judge_pipes = self.layout is not None
        if not opens.is_everything and (can_judge_pipes or not opens.fifo):
            prefixes, names = self._bpf["open_prefixes"], self._bpf["open_names"]
            for text, modes in opens.prefixes().items():
                data = text.encode()
                prefixes[prefixes.Key(len(data) * 8, data)] = ctypes.c_uint8(modes)
            for name, modes in opens.names().items():
                names[names.Key(name.encode())] = ctypes.c_uint8(modes)
            settings[ctypes.c_int(SETTING_OPEN_ANY_MODES)] = ctypes.c_uint64(opens.any_modes)
            settings[ctypes.c_int(SETTING_OPEN_SETID)] = ctypes.c_uint64(opens.setid_modes)
            settings[ctypes.c_int(SETTING_OPEN_FAILED)] = ctypes.c_uint64(int(opens.failed))
            settings[ctypes.c_int(SETTING_OPEN_FILTER)] = ctypes.c_uint64(1)
        if not connects.is_everything and (can_judge_pipes or not connects.piped):
            ports, nets = self._bpf["connect_ports"], self._bpf["connect_nets"]
            for port in connects.ports():
                ports[ctypes.c_uint16(port)] = ctypes.c_uint8(1)
            for net in connects.nets():
                address = (ctypes.c_uint8 * 16)(*net.network_address.packed)
                nets[nets.Key(net.prefixlen, address)] = ctypes.c_uint8(1)
            settings[ctypes.c_int(SETTING_CONNECT_FILTER)] = ctypes.c_uint64(1)
        accepts = can_judge_pipes and filters.accepts.piped_only
        settings[ctypes.c_int(SETTING_ACCEPT_FILTER)] = ctypes.c_uint64(int(accepts))
        pipes = can_judge_pipes and (connects.piped or opens.fifo or accepts)
        settings[ctypes.c_int(SETTING_PIPES)] = ctypes.c_uint64(int(pipes))
        dups = filters.dups
        outbound = dups.outbound_only and self.layout is not None
        settings[ctypes.c_int(SETTING_DUP_SOCKETS_ONLY)] = ctypes.c_uint64(
            2 if outbound else int(dups.sockets_only))
        sockets = filters.sockets
        if not sockets.is_everything:
            settings[ctypes.c_int(SETTING_SOCKETS_ALWAYS)] = ctypes.c_uint64(sockets.always)
            settings[ctypes.c_int(SETTING_SOCKETS_ON_STDIO)] = ctypes.c_uint64(sockets.on_stdio)
            settings[ctypes.c_int(SETTING_SOCKET_FILTER)] = ctypes.c_uint64(1)
        log.info("kernel filters: %s", "; ".join(filters.describe().values()))

    def set_env_names(self, names: frozenset[str] | None) -> None:
        """Have the kernel look for these variables in an environment too large for an exec's
        record, wherever they are in it (probes/process.c; the rules' env_names). None: no
        walk, user space reads such an environment from /proc. Takes effect at once when
        loaded, else at start."""
        self._env_names = names
        if self._bpf is not None:
            self._write_env_names()

    def _write_env_names(self) -> None:
        if self.layout is None:
            return
        setting = ctypes.c_int(SETTING_ENV_NAMES)
        self._bpf["settings"][setting] = ctypes.c_uint64(0)
        table, initials = self._bpf["env_names"], self._bpf["env_initials"]
        table.clear()
        bits = initials.Leaf()
        initials[ctypes.c_int(0)] = bits
        names = sorted(self._env_names or ())
        keys = Counter((name + "=").encode()[:ENV_KEY_LEN] for name in names)
        if not keys or len(keys) > ENV_NAMES_MAX:
            return
        for number, (key, sharing) in enumerate(sorted(keys.items())):
            # a key several long names share keeps every variable it matches, not the first
            table[table.Key(key)] = ctypes.c_uint8(number if sharing == 1 else ENV_KEY_SHARED)
            pair = key[0] << 8 | key[1]
            bits.bits[pair >> 6] |= 1 << (pair & 63)
        initials[ctypes.c_int(0)] = bits
        self._bpf["settings"][setting] = ctypes.c_uint64(1)
        log.info("environments past %d bytes are walked for %s", records.ENV_CAPTURE,
                 ", ".join(names))

    def dump(self) -> str:
        return bpfmod.source(self.sources(), self.defines)

    def sources(self) -> tuple[str, ...]:
        """The probe files to load: io_uring's where the layout knows its requests and the
        kernel has its tracepoints."""
        if self.layout is None or not self.layout.io_uring:
            return SOURCES
        if not all(bpfmod.tracepoint_exists("io_uring", tp) for tp in IO_URING_TRACEPOINTS):
            return SOURCES
        return (*SOURCES, IO_URING_SOURCE)

    def _load(self) -> Any:
        if self.layout is None:
            return bpfmod.load(SOURCES, self.defines)
        try:
            return bpfmod.load(self.sources(), self.defines, TAIL_CALLS)
        except bpfmod.ProbeError as exc:
            log.warning("probes reading the kernel's structs did not load (%s); loading them "
                        "without: paths as written, no fd kinds, no compat syscalls", exc)
            self._layout = None
            return bpfmod.load(SOURCES, self.defines)

    async def start(self) -> None:
        """Compile and attach (in a thread: it takes ~0.5 s), then start draining.

        When the probes that read the kernel's structs cannot load (a kernel older than their
        helpers, a layout the verifier refuses), they load without: paths as written."""
        self._bpf = await asyncio.to_thread(self._load)
        settings = self._bpf["settings"]
        settings[ctypes.c_int(SETTING_TRACK_HOST)] = ctypes.c_uint64(int(self._config.track_host))
        self._write_specs()
        self._write_filters()
        self._write_env_names()
        if self._config.compiled_decoder:
            self._decode = records.compiled_decoder() or records.decode
        log.info("records decoded %s", "in C: open, fork, exit (the others in Python)"
                 if self.decoder == "compiled" else "in Python")
        self._reader = open_reader(
            self._bpf,
            "events",
            self._decode,
            self._on_events,
            interval=self._config.poll_interval_ms / 1000,
            name="syscall-ringbuf",
            direct=self._config.ringbuf_mmap,
        )
        self._reader.start()
        metrics.PROBES_ATTACHED.labels(PROBE_NAME).set(1)
        log.info("syscall probes attached (%s)", ", ".join(self.sources()))

    async def stop(self) -> None:
        """Drain, detach and free the programs (BCC detaches tracepoints on cleanup)."""
        if self._reader is not None:
            await asyncio.to_thread(self._reader.stop)
            self._reader = None
        if self._bpf is not None:
            self.poll_lost()
            self.poll_filtered()
            bpf, self._bpf = self._bpf, None
            bpf.cleanup()
        metrics.PROBES_ATTACHED.labels(PROBE_NAME).set(0)

    def track(self, cgroup_id: int) -> None:
        self._set_state(cgroup_id, CGROUP_TRACKED)

    def ignore(self, cgroup_id: int) -> None:
        self._set_state(cgroup_id, CGROUP_IGNORED)

    def forget(self, cgroup_id: int) -> None:
        if self._bpf is not None:
            with contextlib.suppress(KeyError):
                del self._bpf["cgroup_state"][ctypes.c_uint64(cgroup_id)]

    def cgroup_ids(self) -> list[int]:
        """Every cgroup id the kernel's cgroup_state map holds (its own IGNORED verdicts too)."""
        if self._bpf is None:
            return []
        return [int(key.value) for key in self._bpf["cgroup_state"]]

    def add_watch_root(self, cgroup_id: int) -> None:
        if self._bpf is not None:
            self._bpf["watch_roots"][ctypes.c_uint64(cgroup_id)] = ctypes.c_uint8(1)

    def _set_state(self, cgroup_id: int, state: int) -> None:
        if self._bpf is not None:
            self._bpf["cgroup_state"][ctypes.c_uint64(cgroup_id)] = ctypes.c_uint8(state)

    def poll_lost(self) -> int:
        """Add new kernel-side losses to the metric; returns how many since the last call."""
        if self._bpf is None:
            return 0
        total = sum(int(v) for v in self._bpf["lost_events"].getvalue(ctypes.c_int(0)))
        new, self._lost_seen = total - self._lost_seen, total
        if new:
            metrics.EVENTS_LOST.labels(PROBE_NAME).inc(new)
        return new

    @property
    def lost_total(self) -> int:
        return self._lost_seen

    def poll_filtered(self) -> None:
        """Add what the kernel's filters dropped since the last call to the metric."""
        if self._bpf is None:
            return
        table = self._bpf["filtered"]
        for index, name in enumerate(FILTERS):
            total = sum(int(v) for v in table.getvalue(ctypes.c_int(index)))
            new, self._filtered_seen[name] = total - self._filtered_seen[name], total
            if new:
                metrics.SYSCALLS_FILTERED.labels(name).inc(new)

    def shed_cgroups(self, cgroups: frozenset[int]) -> None:
        """Shed the records of these cgroups (but 100 execs a second) before decoding; empty:
        none."""
        if self._reader is not None:
            self._reader.set_decoder(SheddingDecoder(self._decode, cgroups, self.shed)
                                     if cgroups else self._decode)

    @property
    def kernel_structs(self) -> bool:
        """Whether the loaded probes read the kernel's structs (opens judged by the file the
        kernel opened, fd kinds, compat syscalls) rather than paths as written: false when
        the kernel has no BTF, or when those probes did not load and these fell back."""
        return self._bpf is not None and self._layout is not None

    @property
    def decoder(self) -> str:
        """What decodes the records: "compiled" (open, fork and exit in C) or "python"."""
        return "python" if self._decode is records.decode else "compiled"

    @property
    def handoff(self) -> dict[str, int | float]:
        """The reader's hand-off to the loop: capacity, pending, peak, stalls (ringbuf.Handoff)."""
        return self._reader.handoff.stats() if self._reader is not None else {}

    @property
    def filtered(self) -> dict[str, int]:
        """Syscalls the kernel's filters dropped so far, by filter (FILTERS)."""
        return dict(self._filtered_seen)

    @property
    def filters(self) -> dict[str, str]:
        """What each kernel filter lets through, in words ("every open" when off)."""
        return UNFILTERED if self._filters is None else self._filters.describe()
