"""A small reader of the kernel's BTF (/sys/kernel/btf/vmlinux): where struct members live.

The probes read a few kernel structs (task->fs, the fd table, struct file, dentries, mounts)
whose layout changes between kernel builds. BCC compiles against whatever headers are
installed, which need not match the running kernel, so the offsets come from the running
kernel's own BTF instead and reach the C code as #defines (cauditd.probes.layout). Only what
member lookup needs is parsed: type kinds, names, struct and union members, and the types that
wrap others (typedef, const, volatile).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_MEMBER = struct.Struct("<III")

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
# Bytes after the common 12-byte header: fixed, and per vlen entry.
_EXTRA = {INT: (4, 0), ARRAY: (12, 0), STRUCT: (0, 12), UNION: (0, 12), ENUM: (0, 8),
          FUNC_PROTO: (0, 8), VAR: (4, 0), DATASEC: (0, 12), DECL_TAG: (4, 0), ENUM64: (0, 12)}
_WRAPPERS = frozenset((TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG))


class BtfError(ValueError):
    """The BTF is missing, malformed, or lacks a struct or member a probe needs."""


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    type_id: int
    bit_offset: int


class Btf:
    """The types of one BTF blob; `offset("task_struct", "thread_info.status")` in bytes."""

    def __init__(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            raise BtfError("BTF shorter than its header")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = (
            _HEADER.unpack_from(data))
        if magic != MAGIC:
            raise BtfError(f"not BTF (magic {magic:#x})")
        self._types = memoryview(data)[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strings = bytes(data[hdr_len + str_off : hdr_len + str_off + str_len])
        self._starts: list[int] = [0]  # type id -> offset of its header; id 0 is void
        self._by_name: dict[tuple[int, str], int] = {}
        self._index()

    @classmethod
    def load(cls, path: Path = VMLINUX) -> Btf:
        try:
            return cls(path.read_bytes())
        except OSError as exc:
            raise BtfError(f"cannot read {path}: {exc.strerror}") from exc

    def _index(self) -> None:
        types, pos = self._types, 0
        while pos < len(types):
            name_off, info, _size = _TYPE.unpack_from(types, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            self._starts.append(pos)
            if kind in (STRUCT, UNION) and name_off:
                self._by_name.setdefault((STRUCT, self._string(name_off)), len(self._starts) - 1)
            fixed, per_entry = _EXTRA.get(kind, (0, 0))
            pos += _TYPE.size + fixed + per_entry * vlen

    def _string(self, offset: int) -> str:
        end = self._strings.index(b"\0", offset)
        return self._strings[offset:end].decode()

    def _header(self, type_id: int) -> tuple[int, int, int, bool, int]:
        """(kind, vlen, size or referenced type, kind_flag, name offset) of a type."""
        name_off, info, size = _TYPE.unpack_from(self._types, self._starts[type_id])
        return (info >> 24) & 0x1F, info & 0xFFFF, size, bool(info >> 31), name_off

    def struct_id(self, name: str) -> int:
        """The id of the struct or union called `name`."""
        try:
            return self._by_name[(STRUCT, name)]
        except KeyError:
            raise BtfError(f"struct {name} is not in the kernel's BTF") from None

    def resolve(self, type_id: int) -> int:
        """The type behind typedefs and qualifiers."""
        for _ in range(32):
            kind, _vlen, ref, _flag, _name = self._header(type_id)
            if kind not in _WRAPPERS:
                return type_id
            type_id = ref
        raise BtfError(f"type {type_id}: too many typedef levels")

    def members(self, type_id: int) -> list[Member]:
        kind, vlen, _size, kind_flag, _name = self._header(type_id)
        if kind not in (STRUCT, UNION):
            raise BtfError(f"type {type_id} is not a struct or union")
        base = self._starts[type_id] + _TYPE.size
        found = []
        for i in range(vlen):
            name_off, member_type, offset = _MEMBER.unpack_from(self._types, base + 12 * i)
            bit_offset = offset & 0xFFFFFF if kind_flag else offset
            found.append(Member(self._string(name_off) if name_off else "", member_type,
                                bit_offset))
        return found

    def _find(self, type_id: int, name: str) -> tuple[int, int] | None:
        """(bit offset, type id) of member `name`, looking inside anonymous members too."""
        for member in self.members(type_id):
            if member.name == name:
                return member.bit_offset, member.type_id
            if not member.name:
                inner = self.resolve(member.type_id)
                if self._header(inner)[0] in (STRUCT, UNION):
                    found = self._find(inner, name)
                    if found is not None:
                        return member.bit_offset + found[0], found[1]
        return None

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of a member path ("thread_info.status", "d_name.name") in a struct."""
        type_id, bits = self.struct_id(struct_name), 0
        for part in path.split("."):
            inner = self.resolve(type_id)
            if self._header(inner)[0] not in (STRUCT, UNION):
                raise BtfError(f"{struct_name}.{path}: {part!r} is inside a non-struct")
            found = self._find(inner, part)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {path}")
            bits += found[0]
            type_id = found[1]
        if bits % 8:
            raise BtfError(f"{struct_name}.{path} is a bit field")
        return bits // 8

    def size(self, struct_name: str) -> int:
        """Size in bytes of a struct (an array member's stride)."""
        return self._header(self.struct_id(struct_name))[2]

    def has_member(self, struct_name: str, path: str) -> bool:
        try:
            self.offset(struct_name, path)
        except BtfError:
            return False
        return True
