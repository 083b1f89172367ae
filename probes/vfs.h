/* vfs.h: what the kernel itself knows about a task's files, read from its own structs.
 *
 * Offsets are #defines computed at start-up from the running kernel's BTF
 * (cauditd.probes.layout), never the installed headers' layouts (BCC compiles against whatever
 * headers are installed: here 6.1 headers for a 6.18 kernel). Without BTF, KERNEL_LAYOUT is
 * undefined and none of this is compiled: the probes then report paths as written.
 *
 * rpath_walk() builds the path of a (vfsmount, dentry) pair the way d_path() does, up to the
 * task's root (task->fs->root: a container's root, or a chroot), crossing mounts through
 * mnt_parent/mnt_mountpoint. bpf_d_path() is not allowed from tracepoints, so it is a bounded
 * loop over dentries, writing names backwards into a per-CPU buffer. It reads without locks,
 * like every tracer: a rename racing the walk can show either name.
 *
 * Cost: 2 kernel reads per path component (its parent and name's length and address as one
 * span, then the name), 1 per mount crossed, ~3 to reach a file from an fd.
 */
#ifndef CAUDITD_VFS_H
#define CAUDITD_VFS_H

#define S_IFSOCK_BITS 0140000
#define SOCKET_KNOWN 0x80000000U /* sock_info: family << 16 | type follow */

#ifdef KERNEL_LAYOUT

#define TS_COMPAT_FLAG 0x0002 /* thread_info.status: the current syscall came in as 32-bit */
#define RPATH_SIZE 512
#define RPATH_MASK (RPATH_SIZE - 1)
#define RPATH_COMPONENTS 32
#define RPATH_TRUNCATED 1 /* longer or deeper than we walk: the head of the path is missing */
#define RPATH_DETACHED 2  /* not below the task's root (outside its chroot, a pseudo file) */
#define S_IFMT_BITS 0170000
#define S_IFIFO_BITS 0010000

/* A path being built backwards: it ends at buf[RPATH_SIZE - 1] (a NUL) and starts at pos;
 * its last component starts at leaf. The state lives here rather than in locals so the
 * verifier sees each loop step with the same unknown values and walks it once. */
struct rpath {
    char buf[RPATH_SIZE * 2];
    u32 pos;
    u32 leaf;
    u32 flags;
    u32 _pad;
};
BPF_PERCPU_ARRAY(rpath_scratch, struct rpath, 1);

/* A NULL base is not tested for: the read faults, the helper leaves 0, and the verifier keeps
 * one state rather than a known-0 one beside every read (which would double them). */
static __always_inline u64 kread_u64(u64 base, u32 offset)
{
    u64 value = 0;
    bpf_probe_read_kernel(&value, sizeof(value), (void *)(base + offset));
    return value;
}

static __always_inline u32 kread_u32(u64 base, u32 offset)
{
    u32 value = 0;
    bpf_probe_read_kernel(&value, sizeof(value), (void *)(base + offset));
    return value;
}

static __always_inline u16 kread_u16(u64 base, u32 offset)
{
    u16 value = 0;
    bpf_probe_read_kernel(&value, sizeof(value), (void *)(base + offset));
    return value;
}

/* Neighbouring fields of one struct, read with one helper call (a call costs more than the
 * bytes): a span (cauditd.probes.layout.SPANS) is the bytes from <span>_START to
 * <span>_START + <span>_SIZE; SPAN_U64/SPAN_U32 take a field out of the copy by its offset in
 * the struct. A failed read leaves zeros, as kread_* do. */
#define SPAN_WORDS(span) ((span##_SIZE + 7) / 8)
#define SPAN_READ(words, base, span)                                                          \
    bpf_probe_read_kernel(words, span##_SIZE, (void *)((base) + span##_START))
#define SPAN_U64(words, span, offset) (*(u64 *)((char *)(words) + (offset) - span##_START))
#define SPAN_U32(words, span, offset) (*(u32 *)((char *)(words) + (offset) - span##_START))

/* The (vfsmount, dentry) of the struct path at `path`. */
static __always_inline void read_path(u64 path, u64 *mnt, u64 *dentry)
{
    u64 words[SPAN_WORDS(SPAN_PATH)] = {};
    SPAN_READ(words, path, SPAN_PATH);
    *mnt = SPAN_U64(words, SPAN_PATH, OFF_PATH_MNT);
    *dentry = SPAN_U64(words, SPAN_PATH, OFF_PATH_DENTRY);
}

/* The running task, as the verifier knows it from the kernel's BTF: its fields, and those of
 * the structs it points to (files, fs), are read by plain loads (BTF_LOAD), which the verifier
 * checks against the BTF type at that offset, instead of a bpf_probe_read_kernel call each
 * (~25 ns). A pointer read through a helper is a plain number to the verifier: what it leads to
 * is read by helper (kread_*). */
static __always_inline u64 this_task(void)
{
    return (u64)bpf_get_current_task_btf();
}
#define BTF_LOAD(type, base, offset) (*(type *)((base) + (offset)))

/* in_ia32_syscall(): the syscall being made came through int 0x80 (or sysenter) and its
 * number is an i386 one. `task` is this_task(). */
static __always_inline int in_compat_syscall(u64 task)
{
    return (BTF_LOAD(u32, task, OFF_TASK_STATUS) & TS_COMPAT_FLAG) != 0;
}

/* The struct file behind fd `fd` of `task` (this_task()), or 0. */
static __always_inline u64 task_fd_file(u64 task, s64 fd)
{
    if (fd < 0)
        return 0;
    u64 fdt = BTF_LOAD(u64, BTF_LOAD(u64, task, OFF_TASK_FILES), OFF_FILES_FDT);
    if ((u64)fd >= BTF_LOAD(u32, fdt, OFF_FDT_MAX_FDS))
        return 0;
    return kread_u64(BTF_LOAD(u64, fdt, OFF_FDT_FD), (u32)fd * 8);
}

/* What a file is: its inode's type and permission bits, inode number and device. */
struct file_id {
    u64 ino;
    u32 dev;
    u32 mode;
};

/* An inode's number and device: read apart from its mode where most files are dropped on
 * their type or path alone (opens.h), and these two reads would be wasted. */
static __always_inline void inode_number(u64 inode, struct file_id *id)
{
    id->ino = kread_u64(inode, OFF_INODE_INO);
    id->dev = kread_u32(kread_u64(inode, OFF_INODE_SB), OFF_SB_DEV);
}

static __always_inline void file_identity(u64 file, struct file_id *id)
{
    u64 inode = kread_u64(file, OFF_FILE_INODE);
    id->mode = kread_u16(inode, OFF_INODE_MODE);
    inode_number(inode, id);
}

/* A file's type and permission bits (i_mode) alone; 0 for no file. */
static __always_inline u32 file_mode(u64 file)
{
    return file ? kread_u16(kread_u64(file, OFF_FILE_INODE), OFF_INODE_MODE) : 0;
}

/* A socket's family and type as sock_info, from its struct socket and struct sock. */
static __always_inline u32 sock_info_of(u64 sock, u64 sk)
{
    u16 family = kread_u16(sk, OFF_SK_FAMILY);
    u16 type = kread_u16(sock, OFF_SOCKET_TYPE);
    return SOCKET_KNOWN | (u32)family << 16 | (type & 0xff);
}

/* The address family a sock_info holds (0: not a socket). */
static __always_inline u16 sock_family(u32 sock_info)
{
    return (sock_info >> 16) & 0x3fff;
}

/* The same of a socket's file. */
static __always_inline u32 socket_info(u64 file)
{
    u64 sock = kread_u64(file, OFF_FILE_PRIVATE);
    return sock_info_of(sock, kread_u64(sock, OFF_SOCKET_SK));
}

/* The same of any file: 0 unless it is a socket. */
static __always_inline u32 file_sock_info(u64 file)
{
    return (file_mode(file) & S_IFMT_BITS) == S_IFSOCK_BITS ? socket_info(file) : 0;
}

static __always_inline struct rpath *rpath_buffer(void)
{
    int zero = 0;
    return rpath_scratch.lookup(&zero);
}

/* Fill `p` with the path of (mnt, dentry) as `task` sees it. */
static __always_inline void rpath_walk(struct rpath *p, u64 task, u64 mnt, u64 dentry)
{
    u64 fs = BTF_LOAD(u64, task, OFF_TASK_FS);
    u64 root_mnt = BTF_LOAD(u64, fs, OFF_FS_ROOT + OFF_PATH_MNT);
    u64 root_dentry = BTF_LOAD(u64, fs, OFF_FS_ROOT + OFF_PATH_DENTRY);
    u64 mount = mnt - OFF_MOUNT_MNT;
    u64 up[SPAN_WORDS(SPAN_MOUNT)] = {}; /* the mount's root, mountpoint and parent */
    SPAN_READ(up, mount, SPAN_MOUNT);
    p->buf[RPATH_SIZE - 1] = 0;
    p->pos = RPATH_SIZE - 1;
    p->leaf = 0;
    p->flags = RPATH_TRUNCATED; /* cleared when the walk ends before its bound */
    for (int i = 0; i < RPATH_COMPONENTS; i++) {
        if (dentry == root_dentry && mnt == root_mnt) {
            p->flags &= ~RPATH_TRUNCATED;
            break;
        }
        if (dentry == SPAN_U64(up, SPAN_MOUNT, OFF_MOUNT_MNT + OFF_VFSMOUNT_ROOT)) {
            u64 parent_mount = SPAN_U64(up, SPAN_MOUNT, OFF_MOUNT_PARENT);
            if (parent_mount == mount || !parent_mount) {
                p->flags = RPATH_DETACHED;
                break;
            }
            dentry = SPAN_U64(up, SPAN_MOUNT, OFF_MOUNT_MOUNTPOINT);
            mount = parent_mount;
            mnt = mount + OFF_MOUNT_MNT;
            SPAN_READ(up, mount, SPAN_MOUNT);
            continue;
        }
        u64 step[SPAN_WORDS(SPAN_DENTRY)] = {}; /* the parent and the name */
        SPAN_READ(step, dentry, SPAN_DENTRY);
        u64 parent = SPAN_U64(step, SPAN_DENTRY, OFF_DENTRY_PARENT);
        u32 len = SPAN_U32(step, SPAN_DENTRY, OFF_DENTRY_NAME_LEN) & 0xff; /* NAME_MAX: 255 */
        u32 pos = p->pos;
        if (len + 1 > pos)
            break; /* still RPATH_TRUNCATED */
        pos -= len;
        bpf_probe_read_kernel(&p->buf[pos & RPATH_MASK], len,
                              (void *)SPAN_U64(step, SPAN_DENTRY, OFF_DENTRY_NAME));
        pos -= 1;
        p->buf[pos & RPATH_MASK] = '/';
        if (!p->leaf)
            p->leaf = pos + 1;
        p->pos = pos;
        if (parent == dentry || !parent) {
            /* A root of its own that no mount has: a pseudo file (a memfd is "memfd:name",
             * as d_path shows it), named by itself alone. */
            p->flags = RPATH_DETACHED;
            break;
        }
        dentry = parent;
    }
    if (p->pos == RPATH_SIZE - 1) { /* the root itself */
        p->pos = RPATH_SIZE - 2;
        p->buf[RPATH_SIZE - 2] = '/';
        p->leaf = RPATH_SIZE - 1;
    }
}

/* The (vfsmount, dentry) a relative path of `dirfd` starts from: the cwd for AT_FDCWD;
 * 0 when the fd is not open. */
static __always_inline int dirfd_path(u64 task, s64 dirfd, u64 *mnt, u64 *dentry)
{
    u64 base = kread_u64(task, OFF_TASK_FS) + OFF_FS_PWD;
    if (dirfd != AT_FDCWD_ARG) {
        base = task_fd_file(task, dirfd);
        if (!base)
            return 0;
        base += OFF_FILE_PATH;
    }
    read_path(base, mnt, dentry);
    return 1;
}

/* Copy the built path (NUL-terminated) into a record field of `size` bytes. */
static __always_inline void rpath_copy(struct rpath *p, char *dst, u32 size)
{
    bpf_probe_read_kernel_str(dst, size, &p->buf[p->pos & RPATH_MASK]);
}

/* Whether the executable of `task` lives on a mount of another mount namespace than the
 * task's own (the host's runtime binary run inside a container's namespaces), with a real
 * namespace: memfds and other internal mounts have none and do not count. */
static __always_inline int exe_from_foreign_mnt_ns(u64 task, u64 exe_file)
{
    u64 mount = kread_u64(exe_file, OFF_FILE_PATH + OFF_PATH_MNT) - OFF_MOUNT_MNT;
    u64 exe_ns = kread_u64(mount, OFF_MOUNT_NS);
    u64 own_ns = kread_u64(kread_u64(task, OFF_TASK_NSPROXY), OFF_NSPROXY_MNT_NS);
    if (exe_ns >= (u64)-4095) /* MNT_NS_INTERNAL, an error pointer: kernel-internal mounts */
        return 0;
    return exe_ns && own_ns && exe_ns != own_ns;
}

/* The executable a task runs, by identity: for events of processes user space meets without
 * having seen their exec (a runtime's init stages join a container's cgroup after theirs). */
struct exe_id {
    u64 ino;
    u32 dev;
    u32 foreign; /* on a mount of another mount namespace than the task's */
};

static __always_inline void task_exe(u64 task, struct exe_id *exe)
{
    u64 exe_file = kread_u64(kread_u64(task, OFF_TASK_MM), OFF_MM_EXE_FILE);
    struct file_id id = {};
    file_identity(exe_file, &id);
    exe->ino = id.ino;
    exe->dev = id.dev;
    exe->foreign = exe_from_foreign_mnt_ns(task, exe_file);
}

#endif /* KERNEL_LAYOUT */

static __always_inline void fill_exe(struct exe_fields *out)
{
#ifdef KERNEL_LAYOUT
    struct exe_id exe = {};
    task_exe(this_task(), &exe);
    out->exe_ino = exe.ino;
    out->exe_dev = exe.dev;
    out->exe_foreign = exe.foreign;
#else
    out->exe_ino = 0;
    out->exe_dev = 0;
    out->exe_foreign = 0;
#endif
}
#endif
