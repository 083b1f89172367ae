"""probes.maps against real kernel hash maps (plain and LRU): a whole-table read that spans
several batch chunks returns every entry once with its value, and a many-key delete skips keys
already gone and removes exactly the others."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from cauditd.probes import maps

pytestmark = pytest.mark.usefixtures("ebpf")

ENTRIES = maps.CHUNK * 2 + 123  # three chunks, the last one partial
KEY = struct.Struct("<I4xQ")  # u32, padding, u64: as the C struct below lays it out
VALUE = struct.Struct("<QQ")

PROGRAM = r"""
struct key_t { u32 a; u64 b; };
struct value_t { u64 x; u64 y; };
BPF_TABLE("hash", struct key_t, struct value_t, plain, 16384);
BPF_TABLE("lru_hash", struct key_t, struct value_t, lru, 16384);
"""


@pytest.fixture(scope="module")
def bpf() -> Iterator[Any]:
    from bcc import BPF

    program = BPF(text=PROGRAM)
    yield program
    program.cleanup()


def fill(table: Any, n: int) -> None:
    table.clear()
    for i in range(n):
        table[table.Key.from_buffer_copy(KEY.pack(i, i * 7))] = \
            table.Leaf.from_buffer_copy(VALUE.pack(i * 3, i ^ 0x5A5A))


@pytest.mark.parametrize("name", ["plain", "lru"])
def test_read_all_returns_every_entry_once_across_chunks(bpf: Any, name: str) -> None:
    table = bpf[name]
    fill(table, ENTRIES)
    entries = maps.read_all(table)
    assert len(entries) == ENTRIES
    seen = {}
    for raw_key, raw_value in entries:
        assert len(raw_key) == ctypes.sizeof(table.Key) == KEY.size
        a, b = KEY.unpack(raw_key)
        seen[a] = (b, VALUE.unpack(raw_value))
    assert sorted(seen) == list(range(ENTRIES))
    assert all(b == a * 7 and value == (a * 3, a ^ 0x5A5A) for a, (b, value) in seen.items())


@pytest.mark.parametrize("name", ["plain", "lru"])
def test_read_all_of_an_empty_table_is_empty(bpf: Any, name: str) -> None:
    bpf[name].clear()
    assert maps.read_all(bpf[name]) == []


@pytest.mark.parametrize("name", ["plain", "lru"])
def test_delete_keys_skips_the_missing_and_deletes_the_rest(bpf: Any, name: str) -> None:
    table = bpf[name]
    fill(table, ENTRIES)
    # every third key of the first ENTRIES - 10, plus keys never inserted, in between and last
    wanted = [KEY.pack(i, i * 7) for i in range(0, ENTRIES - 10, 3)]
    missing = [KEY.pack(ENTRIES + i, 0) for i in range(5)]
    keys = wanted[:100] + missing[:2] + wanted[100:] + missing[2:]
    assert maps.delete_keys(table, keys) == len(wanted)
    left = {KEY.unpack(k)[0] for k, _ in maps.read_all(table)}
    assert left == set(range(ENTRIES)) - set(range(0, ENTRIES - 10, 3))
    assert maps.delete_keys(table, []) == 0
    assert maps.delete_keys(table, missing) == 0
