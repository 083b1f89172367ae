"""Decoders from the probes' C record layouts to typed events (the only place that sees bytes).

Each layout mirrors a struct in probes/*.c; the first u32 after the timestamps is the kind.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from cauditd.events import Event, ExecEvent

# struct event_header: ts_ns, cgroup_id, kind, pid, tid, uid, gid, _pad, comm[16]
HEADER = struct.Struct("<QQIIIIII16s")
KIND_OFFSET = 16

EVENT_EXEC = 1

_EXEC = struct.Struct(HEADER.format + "II256s")


def cstr(raw: bytes) -> str:
    """A NUL-terminated C string as text (undecodable bytes kept as surrogate escapes)."""
    end = raw.find(b"\0")
    return (raw if end < 0 else raw[:end]).decode("utf-8", "surrogateescape")


def decode_exec(raw: bytes) -> ExecEvent:
    ts, cgroup_id, _kind, pid, tid, uid, gid, _pad, comm, _old_pid, _pad2, filename = (
        _EXEC.unpack_from(raw)
    )
    exe = cstr(filename)
    return ExecEvent(
        type="execve",
        ts_ns=ts,
        cgroup_id=cgroup_id,
        pid=pid,
        tid=tid,
        uid=uid,
        gid=gid,
        comm=cstr(comm),
        exe=exe,
        argv=(exe,),
    )


DECODERS: dict[int, Callable[[bytes], Event]] = {EVENT_EXEC: decode_exec}


def decode(raw: bytes) -> Event | None:
    """Decode one record by its kind; unknown kinds are skipped (None)."""
    (kind,) = struct.unpack_from("<I", raw, KIND_OFFSET)
    decoder = DECODERS.get(kind)
    return decoder(raw) if decoder is not None else None
