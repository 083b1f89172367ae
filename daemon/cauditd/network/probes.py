"""The kernel side of network auditing: probes/net.c compiled and loaded through probes.bpf,
its ring buffer reader, and typed access to its flow table and loss counters."""

from __future__ import annotations

import contextlib
import enum
from typing import Any

from cauditd.network import tc
from cauditd.probes import bpf as bpfmod
from cauditd.probes import maps, net_records
from cauditd.probes.mmap_ringbuf import open_reader
from cauditd.probes.net_records import FlowKey, FlowStats
from cauditd.probes.ringbuf import BatchSink, Reader

SOURCES = ("net.c",)
NET_SERVED = 0  # net_settings[] index
RINGBUF_PAGES = 256
FLOW_TABLE_SIZE = 65536  # flows, and connections counted in aggregates (served_conns)
DIRECTIONS = ("egress", "ingress")  # net_egress / net_ingress, as the container sees them


class ServedMode(enum.IntEnum):
    """What a new inbound flow to a port its container already serves costs (net.c's
    SERVED_*): RECORDS, a flow_new record and a flow (a rule needs the record); QUIET, a flow
    of its own read from the table; AGGREGATE, neither: the connection is counted in its
    client's aggregate flow for that port, and the container's answers in the reverse one."""

    RECORDS = 0
    QUIET = 1
    AGGREGATE = 2


class NetProbes:
    """net.c's two SCHED_CLS programs (for tc.attach), its ring buffer and its flow table.

    `load`, `read_flows`, `flow` and `delete_flows` block (BCC, map syscalls): call them off
    the event loop. `start_reader` hands decoded batches to `sink` on the loop.
    """

    def __init__(self, *, dns_capture: int, ringbuf_mmap: bool = True) -> None:
        self.dns_capture = dns_capture
        self._ringbuf_mmap = ringbuf_mmap
        self._bpf: Any = None
        self._reader: Reader | None = None
        self.programs: list[tc.TcProgram] = []
        self._lost_at_close = dict.fromkeys(net_records.LOST_KINDS, 0)
        self._served = ServedMode.RECORDS
        self._quiet_at_close = 0

    @property
    def defines(self) -> dict[str, int | str]:
        return {"NET_RINGBUF_PAGES": RINGBUF_PAGES, "DNS_CAPTURE": self.dns_capture,
                "FLOW_TABLE_SIZE": FLOW_TABLE_SIZE}

    @property
    def loaded(self) -> bool:
        return self._bpf is not None

    def dump(self) -> str:
        return bpfmod.source(SOURCES, self.defines)

    def load(self) -> None:
        """Compile and load the programs (ProbeError says why not)."""
        self._bpf = bpfmod.load(SOURCES, self.defines)
        fds = bpfmod.load_functions(self._bpf, [f"net_{d}" for d in DIRECTIONS], "SCHED_CLS")
        self.programs = [tc.TcProgram(fds[f"net_{d}"], d) for d in DIRECTIONS]
        self._write_served()

    def set_served(self, mode: ServedMode) -> None:
        """What a new inbound flow to a port its container already answered on costs (see
        ServedMode). Takes effect at once when loaded, else at load."""
        self._served = mode
        if self._bpf is not None:
            self._write_served()

    def _write_served(self) -> None:
        settings = self._bpf["net_settings"]
        settings[settings.Key(NET_SERVED)] = settings.Leaf(int(self._served))

    @property
    def quiet_served(self) -> int:
        """New inbound flows and connections to served ports that sent no record, so far."""
        if self._bpf is None:
            return self._quiet_at_close
        values = self._bpf["net_quiet"]
        return sum(values[values.Key(0)])

    def start_reader(self, sink: BatchSink) -> None:
        """Drain net_events on a thread of its own; decoded batches go to `sink` on the loop."""
        self._reader = open_reader(self._bpf, "net_events", net_records.decode, sink,
                                   interval=0.005, name="net-ringbuf", direct=self._ringbuf_mmap)
        self._reader.start()

    def stop_reader(self) -> None:
        """Stop the reader after a last drain (blocking)."""
        if self._reader is not None:
            self._reader.stop()
            self._reader = None

    @property
    def decode_errors(self) -> int:
        return self._reader.decode_errors if self._reader is not None else 0

    def close(self) -> None:
        """Free the programs (the filters must be detached first)."""
        if self._bpf is None:
            return
        self._lost_at_close = self.lost()
        self._quiet_at_close = self.quiet_served
        bpf, self._bpf = self._bpf, None
        self.programs = []
        bpf.cleanup()

    def read_flows(self) -> list[tuple[FlowKey, FlowStats]]:
        """Every entry of the kernel flow table now (batch reads: maps.read_all)."""
        return [(FlowKey.unpack(k), FlowStats.unpack(v))
                for k, v in maps.read_all(self._bpf["flows"])]

    def flow(self, key: FlowKey) -> FlowStats | None:
        """The kernel's counters of one flow, or None when it holds no such flow."""
        if self._bpf is None:
            return None
        table = self._bpf["flows"]
        try:
            raw = table[table.Key.from_buffer_copy(key.pack())]
        except KeyError:
            return None
        return FlowStats.unpack(bytes(raw))

    def delete_flows(self, keys: list[FlowKey]) -> None:
        """Delete these flows (those the LRU evicted meanwhile are skipped)."""
        maps.delete_keys(self._bpf["flows"], [key.pack() for key in keys])

    def forget_served(self, ifindexes: set[int]) -> None:
        """Forget the ports served on these (detached) interfaces, and the connections
        counted in their aggregates."""
        table = self._bpf["served_ports"]
        for key in [k for k in table if k.ifindex in ifindexes]:
            with contextlib.suppress(KeyError):
                del table[key]
        conns = self._bpf["served_conns"]
        maps.delete_keys(conns, [raw for raw, _ in maps.read_all(conns)
                                 if net_records.FLOW_KEY.unpack(raw)[0] in ifindexes])

    def lost(self) -> dict[str, int]:
        """Records the kernel could not hand over, by kind (new-flow records, DNS copies)."""
        if self._bpf is None:
            return dict(self._lost_at_close)
        values = self._bpf["net_lost"]
        return {kind: sum(values[values.Key(index)])
                for index, kind in enumerate(net_records.LOST_KINDS)}
