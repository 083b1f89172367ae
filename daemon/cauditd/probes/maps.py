"""Whole-table reads and many-key deletes of BPF hash maps, as raw key and value bytes.

BCC's table iteration costs two syscalls per entry (get-next-key, then lookup) and a delete
one more: a flow table of 20k entries read every few seconds is then most of the daemon's CPU
under a server taking many short connections. The kernel's batch commands
(BPF_MAP_LOOKUP_BATCH, BPF_MAP_DELETE_BATCH, Linux 5.6+) move a chunk of entries per syscall.
Where the kernel refuses them (older kernels, map kinds without batch support) both functions
fall back to BCC's per-entry calls.

BCC's own items_lookup_batch passes one integer as both its batch token and its count, and
allocates arrays for the map's whole capacity on every call: hence this module.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Sequence
from typing import Any

CHUNK = 4096  # entries per syscall: a hash bucket never holds more, so none is split
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _lib() -> Any:
    from bcc.libbcc import lib  # the library the tables themselves call

    return lib


def read_all(table: Any) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a BCC hash table now, as the kernel's bytes.

    A batch walk goes bucket by bucket without locking the map: an entry added or deleted
    meanwhile may be missed or read once more, as with key-by-key iteration."""
    key_size, value_size = ctypes.sizeof(table.Key), ctypes.sizeof(table.Leaf)
    keys = ctypes.create_string_buffer(key_size * CHUNK)
    values = ctypes.create_string_buffer(value_size * CHUNK)
    token_in, token_out, count = ctypes.c_uint32(0), ctypes.c_uint32(0), ctypes.c_uint32(0)
    lookup_batch = _lib().bpf_lookup_batch
    out: list[tuple[bytes, bytes]] = []
    first = True
    while True:
        count.value = CHUNK
        ctypes.set_errno(0)
        res = lookup_batch(table.map_fd, None if first else ctypes.byref(token_in),
                           ctypes.byref(token_out), keys, values, ctypes.byref(count))
        err = ctypes.get_errno()
        if res != 0 and first and err in _UNSUPPORTED:
            return [(bytes(k), bytes(v)) for k, v in table.items()]
        if res != 0 and err != errno.ENOENT:
            raise OSError(err, f"BPF_MAP_LOOKUP_BATCH: {errno.errorcode.get(err, err)}")
        kraw, vraw = keys.raw, values.raw
        out.extend((kraw[i * key_size:(i + 1) * key_size],
                    vraw[i * value_size:(i + 1) * value_size]) for i in range(count.value))
        if res != 0:  # ENOENT: the walk reached the end
            return out
        token_in.value = token_out.value
        first = False


def delete_keys(table: Any, keys: Sequence[bytes]) -> int:
    """Delete these keys (the kernel's bytes) from a BCC hash table; those already gone (an
    LRU's eviction) are skipped. Returns how many were deleted."""
    if not keys:
        return 0
    key_size = ctypes.sizeof(table.Key)
    delete_batch = _lib().bpf_delete_batch
    deleted = start = 0
    count = ctypes.c_uint32(0)
    while start < len(keys):
        chunk = keys[start:start + CHUNK]
        buffer = ctypes.create_string_buffer(b"".join(chunk), key_size * len(chunk))
        count.value = len(chunk)
        ctypes.set_errno(0)
        res = delete_batch(table.map_fd, buffer, ctypes.byref(count))
        err = ctypes.get_errno()
        if res != 0 and err in _UNSUPPORTED and deleted == 0 and start == 0:
            return _delete_one_by_one(table, keys)
        deleted += count.value
        start += count.value
        if res != 0:
            if err != errno.ENOENT:
                raise OSError(err, f"BPF_MAP_DELETE_BATCH: {errno.errorcode.get(err, err)}")
            start += 1  # that key was gone already: go on after it
    return deleted


def _delete_one_by_one(table: Any, keys: Sequence[bytes]) -> int:
    deleted = 0
    for raw in keys:
        try:
            del table[table.Key.from_buffer_copy(raw)]
        except KeyError:
            continue
        deleted += 1
    return deleted
