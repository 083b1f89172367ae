"""The compiled record decoder (probes/_fastrecords.c) gives what records.py's decoders give.

records.py is the reference: every record here is decoded by both and the events compared field
by field, including records a hostile process shapes (bytes that are not UTF-8, paths that
fill their buffers, numbers no syscall has) and records of every other kind, which the compiled
decoder hands to records.decode. In CI the module must be built (hatch_build.py).
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cauditd import text
from cauditd.events import HOST, Event, ExitEvent, FileEvent
from cauditd.probes import catalog, records
from tests.conftest import unavailable
from tests.probes.test_records import exec_record, header, open_record, syscall


@pytest.fixture(scope="module")
def fast() -> Iterator[records.Decoder]:
    decoder = records.compiled_decoder()
    if decoder is None:
        unavailable("the compiled record decoder is not built (python3 hatch_build.py)")
    assert decoder is not None
    yield decoder


def fields(event: Event | None) -> Any:
    if event is None:
        return None
    return type(event), {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}


def same(fast: records.Decoder, raw: bytes) -> Event | None:
    """Decode `raw` both ways; they agree, on the event and on what text.decode counted."""
    before = text.UNDECODABLE.copy()
    want = records.decode(raw)
    counted = text.UNDECODABLE - before
    before = text.UNDECODABLE.copy()
    got = fast(raw)
    assert text.UNDECODABLE - before == counted
    assert fields(got) == fields(want)
    return got


def fork_record(nr: int, child: int = 43, flags: int = 0x11, foreign: int = 0) -> bytes:
    return header(records.EVENT_FORK) + struct.pack("<IIQIIQII", 42, child, flags, nr, 0, 9,
                                                    8, foreign)


def exit_record(status: int) -> bytes:
    return header(records.EVENT_EXIT) + struct.pack("<iI", status, 0)


OPEN_CASES = [
    (records.OPEN_RESOLVED, b"/tmp/e/shadow", b"/etc/shadow"),
    (records.OPEN_RESOLVED, b"/etc/shadow", b"/etc/shadow"),
    (records.OPEN_RESOLVED, b"/etc/shad", b"/etc/shadow"),
    (records.OPEN_RESOLVED, b"\xff/x", b"\xff/x"),
    (records.OPEN_RESOLVED, b"\xff/x", b"/y\xfe"),
    (records.OPEN_RESOLVED, b"a" * 256, b"a" * 257),
    (records.OPEN_RESOLVED, b"a" * 256, b"a" * 512),
    (records.OPEN_BASE, b"shadow", b"/etc"),
    (records.OPEN_BASE, b"shadow", b"/\xc3("),
    (0, b"/etc/./shadow", b""),
    (records.OPEN_RESOLVED | records.OPEN_TRUNCATED, b"x", b"/b/c"),
    (records.OPEN_BASE | records.OPEN_TRUNCATED, b"x", b"/b/c"),
    (records.OPEN_RESOLVED | records.OPEN_COMPAT | records.OPEN_IO_URING, b"/a", b"/a"),
    (0xFFFFFFFF, b"\x00", b"\x00"),
]


@pytest.mark.parametrize(("info", "raw", "path"), OPEN_CASES)
@pytest.mark.parametrize("nr", [257, 2, 85, 437, 9999, 1023, 1024])
def test_open_records_decode_alike(fast: records.Decoder, nr: int, info: int, raw: bytes,
                                   path: bytes) -> None:
    event = same(fast, open_record(nr, info, -(2**40), raw, path, dirfd=-100, flags=2**63))
    assert (event is None) == (nr not in catalog.BY_NR)


def test_a_creat_is_open_with_creat_flags(fast: records.Decoder) -> None:
    event = same(fast, open_record(catalog.BY_NAME["creat"].nr, 1, 3, b"/x", b"/x", flags=0))
    assert isinstance(event, FileEvent) and event.flags == records.CREAT_FLAGS


@pytest.mark.parametrize("nr", [0, 56, 57, 58, 435, 12345, 2**32 - 1])
def test_fork_records_decode_alike(fast: records.Decoder, nr: int) -> None:
    event = same(fast, fork_record(nr, child=2**32 - 1, flags=2**64 - 1, foreign=7))
    assert event is not None and event.args == {"flags": 2**64 - 1, "parent_tid": 42}  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [0, 1, 256, -1, -(2**31)])
def test_exit_records_decode_alike(fast: records.Decoder, status: int) -> None:
    same(fast, exit_record(status))


@pytest.mark.parametrize("raw", [
    exec_record(b"/bin/sh", (b"sh", b"-c", b"id")),
    syscall("connect", (3, 0, 16), -111, tail=b"\x02\x00\x00\x50\x7f\x00\x00\x01", addr_len=8),
    syscall("ptrace", (16, 1)),
    header(records.EVENT_CGROUP) + b"/sys/fs/cgroup/x".ljust(256, b"\0"),
    header(99),
])  # fmt: skip
def test_other_kinds_go_to_the_python_decoder(fast: records.Decoder, raw: bytes) -> None:
    same(fast, raw)


def test_the_comm_is_decoded_alike_when_it_is_not_utf8(fast: records.Decoder) -> None:
    raw = bytearray(exit_record(0))
    raw[40:56] = b"\xffevil\x1b[31m\0\0\0\0\0\0"
    assert fast(bytes(raw)).comm == "\udcffevil\x1b[31m"  # type: ignore[union-attr]
    same(fast, bytes(raw))


@pytest.mark.parametrize("raw", [
    open_record(257, 1, 3, b"/x", b"/x")[:-1],
    fork_record(57)[:-1],
    exit_record(0)[:20],
    b"\x06\x00",
    b"",
])  # fmt: skip
def test_a_short_record_raises_as_in_python(fast: records.Decoder, raw: bytes) -> None:
    with pytest.raises(struct.error):
        records.decode(raw)
    with pytest.raises(struct.error):
        fast(raw)


def test_a_batch_decodes_in_order_and_reports_what_failed(fast: records.Decoder) -> None:
    good = [open_record(257, 1, 3, b"/a", b"/a"), fork_record(57), exit_record(3),
            exec_record(b"/bin/true", (b"true",)), open_record(9999, 1, 3, b"/b", b"/b")]
    short = exit_record(0)[:30]
    parts = [good[0], short, good[1], good[2], good[3], good[4]]
    chunk, spans = b"", []
    for part in parts:
        spans.append((len(chunk) + 8, len(part)))
        chunk += b"\0" * 8 + part
    failed: list[tuple[int, Exception]] = []
    events = fast.decode_batch(chunk, spans, lambda size, exc: failed.append((size, exc)))  # type: ignore[attr-defined]
    assert [fields(e) for e in events] == [fields(records.decode(g)) for g in good[:4]]
    assert [(size, type(exc)) for size, exc in failed] == [(30, struct.error)]
    assert failed[0][1].__traceback__ is not None


def test_a_span_outside_the_batch_is_refused(fast: records.Decoder) -> None:
    with pytest.raises(ValueError, match="outside"):
        fast.decode_batch(b"\0" * 64, [(8, 57)], print)  # type: ignore[attr-defined]


def test_an_event_is_built_as_its_dataclass_would_build_it(fast: records.Decoder) -> None:
    a, b = fast(exit_record(0)), fast(exit_record(0))
    assert isinstance(a, ExitEvent) and isinstance(b, ExitEvent)
    assert a.args == {} and a.args is not b.args  # a default factory: one per event
    assert a.process is None and a.container is HOST


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from([records.EVENT_OPEN, records.EVENT_FORK, records.EVENT_EXIT]),
       body=st.binary(min_size=0, max_size=1000))
def test_any_bytes_decode_alike(fast: records.Decoder, kind: int, body: bytes) -> None:
    raw = header(kind) + body
    try:
        want = fields(records.decode(raw))
    except struct.error:
        with pytest.raises(struct.error):
            fast(raw)
        return
    assert fields(fast(raw)) == want


def test_a_build_from_another_source_is_not_used(monkeypatch: pytest.MonkeyPatch,
                                                 fast: records.Decoder) -> None:
    from cauditd.probes import _fastrecords  # type: ignore[attr-defined]

    monkeypatch.setattr(_fastrecords, "SOURCE_SHA", "0" * 64)
    assert records.compiled_decoder() is None


def test_the_source_builds_without_warnings(tmp_path: Path) -> None:
    import hatch_build

    if shutil.which("gcc") is None:
        unavailable("gcc is missing (scripts/bootstrap.sh installs it)")
    assert hatch_build.build(tmp_path / "m.so", ("-Werror",)) is None


def test_records_it_was_not_written_for_leave_decoding_to_python(
        monkeypatch: pytest.MonkeyPatch, fast: records.Decoder) -> None:
    """A layout whose value types differ from what the C code reads (a field widened in
    probes/*.c and records.py, not in _fastrecords.c) is refused, not misread."""
    monkeypatch.setattr(records, "EXIT", struct.Struct(records.HEADER.format + "qI"))
    assert records.compiled_decoder() is None
