"""The BTF reader: member offsets from a blob built here (anonymous unions, bit fields,
typedefs), and the running kernel's layouts the probes are compiled with."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cauditd.probes.btf import MAGIC, STRUCT, TYPEDEF, UNION, Btf, BtfError
from cauditd.probes.layout import CORE, MAX_SPAN, SPANS, KernelLayout, spans

INT = 1


class Blob:
    """A BTF blob assembled type by type (ids from 1, in order)."""

    def __init__(self) -> None:
        self.types = b""
        self.strings = b"\0"

    def name(self, text: str) -> int:
        offset = len(self.strings)
        self.strings += text.encode() + b"\0"
        return offset

    def int_type(self, name: str, size: int) -> None:
        self.types += struct.pack("<III", self.name(name), INT << 24, size)
        self.types += struct.pack("<I", size * 8)

    def record(self, kind: int, name: str, size: int,
               members: list[tuple[str, int, int]], bitfields: bool = False) -> None:
        info = kind << 24 | len(members) | (1 << 31 if bitfields else 0)
        self.types += struct.pack("<III", self.name(name) if name else 0, info, size)
        for member, type_id, offset in members:
            self.types += struct.pack("<III", self.name(member) if member else 0, type_id,
                                      offset)

    def typedef(self, name: str, type_id: int) -> None:
        self.types += struct.pack("<III", self.name(name), TYPEDEF << 24, type_id)

    def bytes(self) -> bytes:
        header = struct.pack("<HBBIIIII", MAGIC, 1, 0, 24, 0, len(self.types), len(self.types),
                             len(self.strings))
        return header + self.types + self.strings


def sample() -> Btf:
    blob = Blob()
    blob.int_type("u32", 4)  # 1
    blob.record(STRUCT, "", 8, [("hash", 1, 0), ("len", 1, 32)])  # 2: anonymous struct
    blob.record(UNION, "", 8, [("", 2, 0), ("hash_len", 1, 0)])  # 3: anonymous union
    blob.record(STRUCT, "qstr", 16, [("", 3, 0), ("name", 1, 64)])  # 4
    blob.typedef("qstr_t", 4)  # 5
    blob.record(STRUCT, "dentry", 64, [("d_flags", 1, 0), ("d_name", 5, 256)])  # 6
    blob.record(STRUCT, "flags", 4, [("a", 1, 3 << 24 | 0), ("b", 1, 5 << 24 | 3)],
                bitfields=True)  # 7
    return Btf(blob.bytes())


def test_offsets_through_typedefs_and_anonymous_members() -> None:
    btf = sample()
    assert btf.offset("dentry", "d_name") == 32
    assert btf.offset("dentry", "d_name.len") == 36  # inside an anonymous struct in a union
    assert btf.offset("dentry", "d_name.name") == 40
    assert btf.offset("qstr", "hash_len") == 0


@pytest.mark.parametrize(("struct_name", "path", "message"), [
    ("inode", "i_mode", "struct inode is not in the kernel's BTF"),
    ("dentry", "d_parent", "struct dentry has no member d_parent"),
    ("dentry", "d_flags.x", "inside a non-struct"),
    ("flags", "b", "is a bit field"),
])  # fmt: skip
def test_what_is_not_there_is_a_clear_error(struct_name: str, path: str, message: str) -> None:
    with pytest.raises(BtfError, match=message):
        sample().offset(struct_name, path)


def test_a_blob_that_is_not_btf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BtfError, match="not BTF"):
        Btf(b"\0" * 32)
    with pytest.raises(BtfError, match="shorter than its header"):
        Btf(b"\x9f\xeb")
    assert KernelLayout.read(tmp_path / "missing") is None


def test_the_running_kernel_gives_every_offset_the_probes_read() -> None:
    layout = KernelLayout.read()
    assert layout is not None, "this kernel has /sys/kernel/btf/vmlinux (ENVIRONMENT.md)"
    assert set(CORE) <= set(layout.offsets)
    defines = layout.defines()
    assert defines["KERNEL_LAYOUT"] == 1
    # layouts that have not moved in years: a wrong reader would not give these
    assert (defines["OFF_PATH_MNT"], defines["OFF_PATH_DENTRY"]) == (0, 8)
    assert defines["OFF_TASK_STATUS"] == 16  # thread_info first in task_struct, then 2 longs
    assert defines["OFF_DENTRY_NAME"] - defines["OFF_DENTRY_NAME_LEN"] == 4
    assert (defines["OFF_UPID_NR"], defines["SIZEOF_UPID"]) == (0, 16)  # int nr; ns pointer
    assert defines["OFF_MM_ENV_END"] - defines["OFF_MM_ENV_START"] == 8
    if layout.overlay:  # the overlay inode wraps the VFS inode; its upper dentry follows
        assert defines["OVERLAY_INODES"] == 1
        assert defines["OFF_OVL_UPPERDENTRY"] > defines["OFF_OVL_VFS_INODE"]
    # the spans vfs.h reads with one call each hold their fields, 8-aligned
    for span, fields in SPANS.items():
        start, size = defines[f"{span}_START"], defines[f"{span}_SIZE"]
        assert start % 8 == 0 and 0 < size <= MAX_SPAN
        for width, names in fields:
            at = sum(int(defines[name]) for name in names)
            assert start <= at and at + width <= start + size, (span, names)


def test_a_span_wider_than_the_probes_read_makes_the_layout_unusable() -> None:
    """A kernel whose fields drifted apart must not have the probes copy more than their stack
    holds: the layout is refused (paths as written), with the reason."""
    offsets = {name: 0 for fields in SPANS.values() for _w, names in fields for name in names}
    assert spans(offsets)["SPAN_DENTRY_SIZE"] == 8
    offsets["OFF_DENTRY_NAME"] = 200
    with pytest.raises(BtfError, match="SPAN_DENTRY would read 208 bytes"):
        spans(offsets)
