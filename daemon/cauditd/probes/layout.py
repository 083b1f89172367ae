"""The running kernel's struct layouts the probes read, as #defines for their C code.

With them the probes resolve paths as the kernel did (probes/vfs.h: the opened file's dentries
and mounts up to the process's root), know what an fd is (socket, pipe, file), name an
executable by the file the kernel runs, and tell 32-bit compat syscalls apart. Offsets come
from the kernel's BTF (cauditd.probes.btf), never from the installed headers, which may belong
to another kernel. Without BTF the probes run without these features (`KernelLayout.read`
returns None and says why).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from cauditd.probes.btf import VMLINUX, Btf, BtfError

log = logging.getLogger(__name__)

# define -> (struct, member path): what probes/vfs.h and process.c read.
CORE: dict[str, tuple[str, str]] = {
    "OFF_TASK_STATUS": ("task_struct", "thread_info.status"),
    "OFF_TASK_FS": ("task_struct", "fs"),
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_TASK_MM": ("task_struct", "mm"),
    "OFF_TASK_REAL_PARENT": ("task_struct", "real_parent"),
    "OFF_TASK_TGID": ("task_struct", "tgid"),
    "OFF_TASK_NSPROXY": ("task_struct", "nsproxy"),
    "OFF_TASK_THREAD_PID": ("task_struct", "thread_pid"),
    "OFF_PID_LEVEL": ("pid", "level"),
    "OFF_PID_NUMBERS": ("pid", "numbers"),
    "OFF_UPID_NR": ("upid", "nr"),
    "OFF_FS_ROOT": ("fs_struct", "root"),
    "OFF_FS_PWD": ("fs_struct", "pwd"),
    "OFF_PATH_MNT": ("path", "mnt"),
    "OFF_PATH_DENTRY": ("path", "dentry"),
    "OFF_DENTRY_PARENT": ("dentry", "d_parent"),
    "OFF_DENTRY_NAME_LEN": ("dentry", "d_name.len"),
    "OFF_DENTRY_NAME": ("dentry", "d_name.name"),
    "OFF_MOUNT_MNT": ("mount", "mnt"),
    "OFF_MOUNT_PARENT": ("mount", "mnt_parent"),
    "OFF_MOUNT_MOUNTPOINT": ("mount", "mnt_mountpoint"),
    "OFF_MOUNT_NS": ("mount", "mnt_ns"),
    "OFF_VFSMOUNT_ROOT": ("vfsmount", "mnt_root"),
    "OFF_NSPROXY_MNT_NS": ("nsproxy", "mnt_ns"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
    "OFF_FDT_FD": ("fdtable", "fd"),
    "OFF_FILE_PATH": ("file", "f_path"),
    "OFF_FILE_INODE": ("file", "f_inode"),
    "OFF_FILE_MODE": ("file", "f_mode"),
    "OFF_FILE_PRIVATE": ("file", "private_data"),
    "OFF_INODE_MODE": ("inode", "i_mode"),
    "OFF_INODE_INO": ("inode", "i_ino"),
    "OFF_INODE_SB": ("inode", "i_sb"),
    "OFF_INODE_NLINK": ("inode", "i_nlink"),
    "OFF_SB_DEV": ("super_block", "s_dev"),
    "OFF_SB_MAGIC": ("super_block", "s_magic"),
    "OFF_MM_EXE_FILE": ("mm_struct", "exe_file"),
    "OFF_MM_ENV_START": ("mm_struct", "env_start"),
    "OFF_MM_ENV_END": ("mm_struct", "env_end"),
    "OFF_TASK_SIGNAL": ("task_struct", "signal"),
    "OFF_SIGNAL_TTY": ("signal_struct", "tty"),
    "OFF_TTY_DRIVER": ("tty_struct", "driver"),
    "OFF_TTY_INDEX": ("tty_struct", "index"),
    "OFF_TTY_DRIVER_MAJOR": ("tty_driver", "major"),
    "OFF_TTY_DRIVER_MINOR_START": ("tty_driver", "minor_start"),
    "OFF_SOCKET_SK": ("socket", "sk"),
    "OFF_SOCKET_TYPE": ("socket", "type"),
    "OFF_SK_FAMILY": ("sock", "__sk_common.skc_family"),
    "OFF_SK_DADDR": ("sock", "__sk_common.skc_daddr"),
    "OFF_SK_RCV_SADDR": ("sock", "__sk_common.skc_rcv_saddr"),
    "OFF_SK_DPORT": ("sock", "__sk_common.skc_dport"),
    "OFF_SK_NUM": ("sock", "__sk_common.skc_num"),
    "OFF_SK_V6_DADDR": ("sock", "__sk_common.skc_v6_daddr"),
    "OFF_SK_V6_RCV_SADDR": ("sock", "__sk_common.skc_v6_rcv_saddr"),
}
# Fields of one struct that probes/vfs.h reads together, with one helper call for the bytes
# from the first to the end of the last (each call costs ~25 ns, more than the bytes): span ->
# its fields, each as (width in bytes, the defines whose sum is its offset). `<span>_START` (8
# aligned) and `<span>_SIZE` are defined; a span over MAX_SPAN bytes (a layout unlike every
# kernel's since 2.6) makes the layout unusable rather than the probes' stack overflow.
SPANS: dict[str, tuple[tuple[int, tuple[str, ...]], ...]] = {
    # a path walk's step: the parent and the name
    "SPAN_DENTRY": ((8, ("OFF_DENTRY_PARENT",)), (4, ("OFF_DENTRY_NAME_LEN",)),
                    (8, ("OFF_DENTRY_NAME",))),
    # what an open opened: its inode, and the (mount, dentry) to walk
    "SPAN_FILE": ((8, ("OFF_FILE_INODE",)), (8, ("OFF_FILE_PATH", "OFF_PATH_MNT")),
                  (8, ("OFF_FILE_PATH", "OFF_PATH_DENTRY"))),
    # a path walk's mount: its root, where it sits, and its parent
    "SPAN_MOUNT": ((8, ("OFF_MOUNT_PARENT",)), (8, ("OFF_MOUNT_MOUNTPOINT",)),
                   (8, ("OFF_MOUNT_MNT", "OFF_VFSMOUNT_ROOT"))),
    # a struct path (a file's, the cwd)
    "SPAN_PATH": ((8, ("OFF_PATH_MNT",)), (8, ("OFF_PATH_DENTRY",))),
    # where a new image's environment strings are
    "SPAN_ENV": ((8, ("OFF_MM_ENV_START",)), (8, ("OFF_MM_ENV_END",))),
    # a terminal driver's device numbers
    "SPAN_TTY_DRIVER": ((4, ("OFF_TTY_DRIVER_MAJOR",)), (4, ("OFF_TTY_DRIVER_MINOR_START",))),
}
MAX_SPAN = 64
# define -> struct: sizes of array elements the probes index.
SIZES: dict[str, str] = {"SIZEOF_UPID": "upid"}
# io_uring requests as the submission tracepoint sees them (kernels with io_uring only).
IO_URING: dict[str, tuple[str, str]] = {
    "OFF_REQ_CMD": ("io_kiocb", "cmd"),
    "OFF_OPEN_DFD": ("io_open", "dfd"),
    "OFF_OPEN_FILENAME": ("io_open", "filename"),
    "OFF_OPEN_FLAGS": ("io_open", "how.flags"),
    "OFF_OPEN_MODE": ("io_open", "how.mode"),
    "OFF_OPEN_SLOT": ("io_open", "file_slot"),
    "OFF_FILENAME_NAME": ("filename", "name"),
    "OFF_CONNECT_ADDR": ("io_connect", "addr"),
    "OFF_CONNECT_ADDR_LEN": ("io_connect", "addr_len"),
    "OFF_ACCEPT_FILE": ("io_accept", "file"),
    "OFF_ACCEPT_SLOT": ("io_accept", "file_slot"),
}

# io_uring's path operations (IORING_OP_RENAMEAT to IORING_OP_LINKAT; kernels from 5.15).
IO_URING_FILES: dict[str, tuple[str, str]] = {
    "OFF_RENAME_OLD_DFD": ("io_rename", "old_dfd"),
    "OFF_RENAME_NEW_DFD": ("io_rename", "new_dfd"),
    "OFF_RENAME_OLDPATH": ("io_rename", "oldpath"),
    "OFF_RENAME_NEWPATH": ("io_rename", "newpath"),
    "OFF_RENAME_FLAGS": ("io_rename", "flags"),
    "OFF_UNLINK_DFD": ("io_unlink", "dfd"),
    "OFF_UNLINK_FLAGS": ("io_unlink", "flags"),
    "OFF_UNLINK_FILENAME": ("io_unlink", "filename"),
    "OFF_MKDIR_DFD": ("io_mkdir", "dfd"),
    "OFF_MKDIR_MODE": ("io_mkdir", "mode"),
    "OFF_MKDIR_FILENAME": ("io_mkdir", "filename"),
    "OFF_LINK_OLD_DFD": ("io_link", "old_dfd"),
    "OFF_LINK_NEW_DFD": ("io_link", "new_dfd"),
    "OFF_LINK_OLDPATH": ("io_link", "oldpath"),
    "OFF_LINK_NEWPATH": ("io_link", "newpath"),
    "OFF_LINK_FLAGS": ("io_link", "flags"),
}

# io_uring sends with an address (IORING_OP_SEND with one, SENDMSG, and their zero-copy kinds):
# kernels that copy the message header at preparation (6.10 on) hold the address in the
# request's async data by submission; earlier ones leave these sends unfollowed.
IO_URING_SENDS: dict[str, tuple[str, str]] = {
    "OFF_REQ_ASYNC_DATA": ("io_kiocb", "async_data"),
    "OFF_MSG_NAMELEN": ("io_async_msghdr", "msg.msg_namelen"),
    "OFF_MSG_ADDR": ("io_async_msghdr", "addr"),
}

# overlayfs's inodes (when overlayfs is built in: a module's types are not in vmlinux's BTF):
# whether a container's executable was written since it started, from the file itself.
OVERLAY: dict[str, tuple[str, str]] = {
    "OFF_OVL_VFS_INODE": ("ovl_inode", "vfs_inode"),
    "OFF_OVL_UPPERDENTRY": ("ovl_inode", "__upperdentry"),
}


@dataclass(frozen=True, slots=True)
class KernelLayout:
    """Member offsets of the running kernel (by define name), and which optional parts exist."""

    offsets: dict[str, int]
    io_uring: bool
    overlay: bool = False
    io_uring_files: bool = False  # ... and its path operations
    io_uring_sends: bool = False  # ... and its sends' addresses

    @classmethod
    def read(cls, path: Path = VMLINUX) -> KernelLayout | None:
        """The layout from the kernel's BTF; None (with the reason logged) when there is none."""
        try:
            btf = Btf.load(path)
            offsets = {name: btf.offset(*where) for name, where in CORE.items()}
            offsets.update({name: btf.size(struct) for name, struct in SIZES.items()})
            offsets.update(spans(offsets))
        except BtfError as exc:
            log.warning("kernel BTF unusable (%s): paths as written, no fd kinds, no compat "
                        "syscalls", exc)
            return None
        io_uring = _read_group(btf, IO_URING, offsets, "io_uring requests not readable: "
                               "io_uring operations not traced")
        io_uring_files = io_uring and _read_group(
            btf, IO_URING_FILES, offsets, "io_uring path operations not readable: ring "
            "renames, unlinks, mkdirs and links not traced")
        io_uring_sends = io_uring and _read_group(
            btf, IO_URING_SENDS, offsets, "io_uring send messages not readable: ring sends "
            "with an address not traced")
        overlay = _read_group(btf, OVERLAY, offsets, "overlayfs inodes not readable: an "
                              "executable's layer is looked up in the container's upper directory")
        return cls(offsets, io_uring, overlay, io_uring_files, io_uring_sends)

    def defines(self) -> dict[str, int | str]:
        """The #defines that switch the kernel-struct parts of the probes on."""
        found: dict[str, int | str] = {"KERNEL_LAYOUT": 1, **self.offsets}
        if self.io_uring:
            found["IO_URING_REQUESTS"] = 1
        if self.io_uring_files:
            found["IO_URING_FILE_OPS"] = 1
        if self.io_uring_sends:
            found["IO_URING_SENDS"] = 1
        if self.overlay:
            found["OVERLAY_INODES"] = 1
        return found


def _read_group(btf: Btf, group: dict[str, tuple[str, str]], offsets: dict[str, int],
                unavailable: str) -> bool:
    """Add an optional group's offsets; False (and `unavailable` logged) when one is missing."""
    try:
        offsets.update({name: btf.offset(*where) for name, where in group.items()})
    except BtfError as exc:
        log.info("%s (%s)", unavailable, exc)
        return False
    return True


def spans(offsets: dict[str, int]) -> dict[str, int]:
    """`<span>_START` and `<span>_SIZE` of every SPANS entry, from the member offsets."""
    found: dict[str, int] = {}
    for span, fields in SPANS.items():
        starts = [sum(offsets[name] for name in names) for _width, names in fields]
        start = min(starts) & ~7
        size = max(at + width for at, (width, _names) in zip(starts, fields, strict=True)) - start
        if size > MAX_SPAN:
            raise BtfError(f"{span} would read {size} bytes (at most {MAX_SPAN}): an unusual "
                           "kernel layout")
        found[f"{span}_START"] = start
        found[f"{span}_SIZE"] = size
    return found
