/* syscalls.c: the file, privilege, isolation and network syscalls of traced cgroups.
 *
 * raw_syscalls sys_exit emits one record per traced call, with its return value. With the
 * kernel's layout the arguments of most calls are read there, from the user registers the
 * kernel saved at entry (EXIT_LATE); exec (argv), exit (its status), fork (its flags, which
 * process.c reads mid-call), sendmmsg (a stash per message) and every i386 call are stashed
 * per thread at sys_enter instead, as every call is without the layout. What to capture is
 * data, not code: user space fills syscall_spec
 * (by syscall number) with which arguments are C strings, which is a socket address, which is a
 * pointer to dereference, and whether the syscall is traced at entry, at exit, or not at all
 * (from the rules' needed_syscalls; exec, fork and exit are always on for the process table).
 *
 * With the kernel's layout (KERNEL_LAYOUT, from its BTF; see vfs.h):
 * - 32-bit compat syscalls (int 0x80) are recognised (thread_info.status) and mapped to the
 *   x86_64 syscall they are (syscall_spec.compat_native, from the catalog's i386 numbers);
 *   socketcall is unpacked. An i386 number is never read as an x86_64 one.
 * - opens are handled at sys_exit only (opens.h): the path judged and reported is the file the
 *   kernel opened, resolved through its dentries; the path as written travels along.
 * - relative paths of other file syscalls carry the directory they were relative to at the
 *   time of the call (the cwd or the dirfd, resolved by the kernel) in `base`.
 * - dups onto fds 0-2 are judged by what the new fd is (a socket, a pipe, a file), read from
 *   the fd table, and carry a socket's family, type and peer.
 * Without it, x86_64 numbers only and paths as written (user space resolves them from /proc).
 *
 * Filters (filters.h) drop in the kernel the opens, connects/sendtos, dups and new sockets no
 * loaded rule can match, counted in filtered[].
 *
 * Cost: an array lookup per syscall on the whole host (disabled syscalls stop there), then one
 * cgroup_state lookup and, with the layout, one read of thread_info.status; a traced syscall
 * adds a ~920-byte record, and a stashed one a pending-map update, lookup and delete. Opens:
 * see opens.h.
 * Caveats: strings are read at exit (for a stashed call, at entry too for the filters): a
 * racing thread could change them after the kernel read them, the same TOCTOU every syscall
 * tracer has (an LSM hook would close it); paths are cut at 256 bytes, mount's fstype at 64, socket addresses at 128.
 */
#include "common.h"
#include "vfs.h"
#include "filters.h"

#define ARG_NONE 255
#define NO_SYSCALL 0xffff
#define SOCKETCALL_NATIVE 0xfffe /* compat_native of i386 socketcall: unpacked at entry */
#define OPT_ADDRLEN_PTR 1
#define OPT_REQUIRE_ADDR 2
#define OPT_SOCKET_RESULT 4
#define OPT_SOCK_FD0 8
#define OPT_LOW_NEWFD 16
#define OPT_MEMFD_RESULT 32
#define OPT_OPEN_FILTER 64
#define OPT_CONNECT_FILTER 128
#define OPT_MSGHDR 256      /* the address is msg_name of the msghdr at `addr` */
#define OPT_FCNTL_DUP 512   /* fcntl: only F_DUPFD/F_DUPFD_CLOEXEC onto fds 0-2 are wanted */
#define OPT_RESOLVE_CWD 1024 /* chdir/fchdir: the record carries the new cwd in base */
#define OPT_MMSG 2048       /* sendmmsg: each message's msghdr, up to MMSG_MAX of them */
#define MMSG_MAX 16
#define SOCKET_ACCEPTED 0x40000000U /* returned by accept: the server's end of a connection */
#define DUPS_OUTBOUND 2 /* SETTING_DUP_SOCKETS_ONLY: sockets that accept() did not return */
#define AT_EMPTY_PATH_FLAG 0x1000
#define F_DUPFD_CMD 0
#define F_DUPFD_CLOEXEC_CMD 1030
#define STR_LEN 256
#define ADDR_LEN 128
#define X32_SYSCALL_BIT 0x40000000
#define SC_BASE 2    /* base holds the directory path1 was relative to (or the new cwd) */
#define SC_DETACHED 4 /* base is not below the process's root */

struct syscall_spec {
    u8 enter;   /* stash at entry (side effects only when emit is 0) */
    u8 emit;
    u8 path1;
    u8 path2;
    u8 str3;
    u8 addr;
    u8 addrlen;
    u8 deref;
    u32 opts;
    u8 exit;    /* handled at exit alone, no stash (with the kernel's layout): EXIT_OPEN by
                   opens.h's tail call, EXIT_LATE here, the arguments read from the registers */
    u8 compat_enter; /* the i386 syscall of this number is traced at entry / at exit */
    u16 compat_native; /* the x86_64 number of the i386 syscall with this number */
    u8 compat_exit;
    u8 _pad[3];
};
BPF_ARRAY(syscall_spec, struct syscall_spec, SYSCALL_MAX);

struct syscall_record {
    struct event_header h;
    u32 nr;
    u32 sock_info;
    s64 ret;
    u64 args[6];
    u64 deref;
    u32 addr_len;
    u32 info;    /* SC_COMPAT, SC_BASE, SC_DETACHED */
    u32 fd_mode; /* i_mode of the file at the fd a dup placed (0: unknown) */
    u32 _pad;
    struct exe_fields exe;
    char path1[STR_LEN];
    char tail[STR_LEN]; /* second path, or socket address; mount's fstype at +192 */
    char base[STR_LEN];
};

static __always_inline u64 arg_at(const u64 *args, u8 index)
{
    switch (index) {
    case 0: return args[0];
    case 1: return args[1];
    case 2: return args[2];
    case 3: return args[3];
    case 4: return args[4];
    case 5: return args[5];
    }
    return 0;
}

static __always_inline struct syscall_spec *spec_of(long id)
{
    if (id & X32_SYSCALL_BIT)
        id &= ~X32_SYSCALL_BIT; /* x32 shares the x86_64 numbers below 512 */
    if (id < 0 || id >= SYSCALL_MAX)
        return NULL;
    u32 nr = id;
    return syscall_spec.lookup(&nr);
}

/* argv pointers are 8 bytes apart, 4 in a compat exec. */
static __always_inline void capture_argv(u64 argv, u32 flags, u32 stride)
{
    int zero = 0;
    struct exec_args *scratch = exec_scratch.lookup(&zero);
    if (!scratch)
        return;
    scratch->argc = 0;
    scratch->flags = flags;
#pragma unroll
    for (int i = 0; i < ARGV_MAX; i++) {
        u64 arg = 0;
        if (read_user(&arg, stride == 4 ? 4 : 8, (void *)(argv + i * stride)) || !arg)
            break;
        if (read_user_str(scratch->argv[i], ARG_LEN, (void *)arg) < 0)
            break;
        scratch->argc = i + 1;
    }
    u32 tid = (u32)bpf_get_current_pid_tgid();
    exec_args.update(&tid, scratch);
}

static __always_inline u32 exec_flags(u64 tgid, u64 dirfd, u64 at_flags)
{
    if (!(at_flags & AT_EMPTY_PATH_FLAG))
        return 0;
    u64 key = tgid << 32 | (u32)dirfd;
    if (memfd_fds.lookup(&key))
        return EXEC_FROM_MEMFD;
    u32 child = tgid;
    u32 *parent = parent_of.lookup(&child);
    if (!parent)
        return 0;
    key = (u64)*parent << 32 | (u32)dirfd;
    return memfd_fds.lookup(&key) ? EXEC_FROM_MEMFD : 0;
}

#ifdef KERNEL_LAYOUT
/* The server's ends of connections, by socket inode number: what makes a socket accepted
 * follows the socket wherever it is dup'd or inherited, and an fd number reused for another
 * socket (an accepted fd closed, then an outbound socket dup'd onto that number) is not taken
 * for it. Socket inode numbers are not reused before 2^32 new inodes; LRU-bounded (an evicted
 * one is judged as not accepted: its dups onto 0-2 are sent). */
BPF_TABLE("lru_hash", u64, u8, accepted_socks, 65536);

static __always_inline u64 socket_inode(u64 file)
{
    return kread_u64(kread_u64(file, OFF_FILE_INODE), OFF_INODE_INO);
}

static __always_inline void remember_accepted(s64 fd)
{
    u64 ino = socket_inode(task_fd_file(this_task(), fd));
    u8 one = 1;
    if (ino)
        accepted_socks.update(&ino, &one);
}

static __always_inline int accepted_file(u64 file)
{
    u64 ino = socket_inode(file);
    return ino && accepted_socks.lookup(&ino);
}
#endif

static __always_inline void remember_fd(struct syscall_spec *spec, struct pending_syscall *p,
                                        u64 tgid, s64 ret)
{
    if (ret < 0)
        return;
    u64 key = tgid << 32 | (u32)ret;
    if (spec->opts & OPT_MEMFD_RESULT) {
        u32 one = 1;
        memfd_fds.update(&key, &one);
    }
    if (!(spec->opts & OPT_SOCKET_RESULT))
        return;
#ifdef KERNEL_LAYOUT
    /* The fd table says what an fd is (fd_sock_info); only the server's end is remembered. */
    if (p->nr != SYSNR_SOCKET)
        remember_accepted(ret);
#else
    u32 info = SOCKET_KNOWN;
    if (p->nr == SYSNR_SOCKET) {
        info |= (u32)(p->args[0] & 0xffff) << 16 | (u32)(p->args[1] & 0xff);
    } else {
        u64 listener = tgid << 32 | (u32)p->args[0];
        u32 *known = socket_fds.lookup(&listener);
        if (known)
            info = *known;
        info |= SOCKET_ACCEPTED;
    }
    socket_fds.update(&key, &info);
#endif
}

/* Where a socket address is: the argument itself, or msg_name of a msghdr (whose layout has
 * 4-byte pointers in compat calls). Fills *len from the address length. */
static __always_inline u64 addr_ptr(struct syscall_spec *spec, struct pending_syscall *p,
                                    u32 *len)
{
    u64 ptr = arg_at(p->args, spec->addr);
    if (spec->opts & OPT_MSGHDR) {
        u64 msg = ptr;
        if (spec->opts & OPT_MMSG) /* struct mmsghdr: a msghdr and a u32, 64 or 32 bytes */
            msg += (p->deref & (MMSG_MAX - 1)) * (p->info & SC_COMPAT ? 32 : 64);
        ptr = 0;
        *len = 0;
        if (!msg)
            return 0;
        if (p->info & SC_COMPAT) {
            u32 head[2] = {}; /* compat_msghdr: msg_name, msg_namelen */
            read_user(head, sizeof(head), (void *)msg);
            ptr = head[0];
            *len = head[1];
        } else {
            read_user(&ptr, sizeof(ptr), (void *)msg);
            read_user(len, sizeof(*len), (void *)(msg + 8));
        }
        return ptr;
    }
    u64 len_arg = arg_at(p->args, spec->addrlen);
    *len = len_arg;
    if (spec->opts & OPT_ADDRLEN_PTR) {
        *len = 0;
        if (len_arg)
            read_user(len, sizeof(*len), (void *)len_arg);
    }
    return ptr;
}

static __always_inline u32 read_addr(struct syscall_record *rec, struct syscall_spec *spec,
                                     struct pending_syscall *p)
{
    u32 len = 0;
    u64 ptr = addr_ptr(spec, p, &len);
    if (!ptr)
        return 0;
    if (len > ADDR_LEN)
        len = ADDR_LEN;
    len &= 0xff;
    if (len == 0 || read_user(rec->tail, len, (void *)ptr))
        return 0;
    return len;
}

/* A syscall record reserved for the call `p` (its number, arguments, deref and info) and its
 * result, with the header and the executable filled and the rest zeroed (the strings empty);
 * NULL, the loss counted, when the ring buffer is full. This process's held forks go first. */
static __always_inline struct syscall_record *syscall_record_begin(struct pending_syscall *p,
                                                                  s64 ret, u64 cgroup_id)
{
    send_own_held_forks();
    struct syscall_record *rec = events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_lost();
        return NULL;
    }
    fill_header(&rec->h, EVENT_SYSCALL, cgroup_id);
    rec->nr = p->nr;
    rec->ret = ret;
#pragma unroll
    for (int i = 0; i < 6; i++)
        rec->args[i] = p->args[i];
    rec->deref = p->deref;
    rec->info = p->info;
    rec->sock_info = 0;
    rec->addr_len = 0;
    rec->fd_mode = 0;
    rec->_pad = 0;
    fill_exe(&rec->exe);
    rec->path1[0] = 0;
    rec->tail[0] = 0;
    rec->base[0] = 0;
    return rec;
}

/* The call's strings, or its socket address, into a record syscall_record_begin made. */
static __always_inline void read_strings(struct syscall_record *rec, struct syscall_spec *spec,
                                         struct pending_syscall *p)
{
    if (spec->path1 < 6)
        read_user_str(rec->path1, STR_LEN, (void *)arg_at(p->args, spec->path1));
    if (spec->str3 < 6) {
        read_user_str(rec->tail, 192, (void *)arg_at(p->args, spec->path2));
        read_user_str(rec->tail + 192, 64, (void *)arg_at(p->args, spec->str3));
    } else if (spec->path2 < 6) {
        read_user_str(rec->tail, STR_LEN, (void *)arg_at(p->args, spec->path2));
    } else if (spec->addr < 6) {
        rec->addr_len = read_addr(rec, spec, p);
    }
}

/* What fd `fd` of the calling process is, if a socket (sock_info; 0 if not): with the kernel's
 * layout from its fd table, so a socket it inherited, or made before the daemon started, or
 * whose socket_fds entry was evicted, is known too (accept(fd, NULL, NULL) of such a listener
 * says its family only here); without it, as socket() and accept() results taught socket_fds. */
static __always_inline u32 fd_sock_info(u64 tgid, u64 fd)
{
#ifdef KERNEL_LAYOUT
    return file_sock_info(task_fd_file(this_task(), fd));
#else
    u64 key = tgid << 32 | (u32)fd;
    u32 *known = socket_fds.lookup(&key);
    return known ? *known : 0;
#endif
}

/* A dup onto fd 0-2: when every rule about dups asks for a socket (the reverse-shell rule),
 * only dups of a socket this process is known to hold pass. */
static __always_inline int dup_wanted(u64 tgid, u64 oldfd)
{
    if (!setting(SETTING_DUP_SOCKETS_ONLY))
        return 1;
    u64 fd_key = tgid << 32 | (u32)oldfd;
    return socket_fds.lookup(&fd_key) != NULL;
}

/* A connect or accept by a process whose stdin and stdout are both pipes or FIFOs (a relay
 * such as nc between a shell and the network), or marked a relay (pipe_relays: it opened a
 * FIFO by path, or holds a child's stdio pipes), when a rule asks for those (SETTING_PIPES). */
static __always_inline int call_of_piped_process(void)
{
#ifdef KERNEL_LAYOUT
    if (!setting(SETTING_PIPES))
        return 0;
    u64 task = this_task();
    if ((file_mode(task_fd_file(task, 0)) & S_IFMT_BITS) == S_IFIFO_BITS
        && (file_mode(task_fd_file(task, 1)) & S_IFMT_BITS) == S_IFIFO_BITS)
        return 1;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    return pipe_relays.lookup(&tgid) != NULL;
#else
    return 0;
#endif
}

/* sendmmsg: the first message some rule may want is the one reported (deref is its index);
 * messages past MMSG_MAX are not looked at. The loop reads only msg_name of each struct
 * mmsghdr (64 bytes apart, 32 in a compat call, whose pointers are 4 bytes). */
static __always_inline int stash_mmsg(struct pending_syscall *p, u32 tid)
{
    u32 vlen = p->args[2];
    u64 msg = p->args[1];
    u32 stride = p->info & SC_COMPAT ? 32 : 64;
    u32 size = p->info & SC_COMPAT ? 4 : 8;
    for (u32 i = 0; i < MMSG_MAX; i++) {
        if (i >= vlen)
            break;
        u64 name = 0;
        read_user(&name, size, (void *)(msg + i * stride));
        if (name && connect_wanted(name)) {
            p->deref = i;
            pending.update(&tid, p);
            return 0;
        }
    }
    return 0; /* no message any rule may want: not counted (most have no address at all) */
}

/* What the raw tracepoints are not given: the call's arguments and, at exit, its number. They
 * are in the user registers the kernel saved at entry (struct pt_regs: r15 r14 r13 r12 bp bx r11
 * r10 r9 r8 ax cx dx si di orig_ax, 8 bytes each), still intact at exit: di si dx r10 r8 r9, or
 * for an i386 call bx cx dx si di bp cut to 32 bits; orig_ax is the number as the call was made.
 * With the kernel's BTF they are plain loads from bpf_task_pt_regs(); without, one read. */
#define REG_ORIG_AX 15
#ifdef KERNEL_LAYOUT
#define REG(regs, i) BTF_LOAD(u64, regs, (i) * 8)
static __always_inline u64 saved_regs(struct bpf_raw_tracepoint_args *ctx)
{
    return (u64)bpf_task_pt_regs(bpf_get_current_task_btf());
}
#else
struct saved_regs {
    u64 r[REG_ORIG_AX + 1];
};
BPF_PERCPU_ARRAY(regs_scratch, struct saved_regs, 1);
#define REG(regs, i) (((struct saved_regs *)(regs))->r[i])
static __always_inline u64 saved_regs(struct bpf_raw_tracepoint_args *ctx)
{
    int zero = 0;
    struct saved_regs *r = regs_scratch.lookup(&zero);
    if (!r)
        return 0;
    if (bpf_probe_read_kernel(r, sizeof(*r), (void *)ctx->args[0]))
        return 0;
    return (u64)r;
}
#endif

/* At every sys_exit of every task: without the layout, orig_ax alone is read, not the whole
 * struct syscall_args reads. */
static __always_inline long syscall_id(struct bpf_raw_tracepoint_args *ctx)
{
#ifdef KERNEL_LAYOUT
    return (long)REG(saved_regs(ctx), REG_ORIG_AX);
#else
    long id = -1;
    bpf_probe_read_kernel(&id, sizeof(id), (void *)(ctx->args[0] + REG_ORIG_AX * 8));
    return id;
#endif
}

static __always_inline void syscall_args(struct bpf_raw_tracepoint_args *ctx, u64 *a, int compat)
{
    u64 regs = saved_regs(ctx);
    if (!regs)
        return;
    if (compat) {
        a[0] = REG(regs, 5) & 0xffffffff;
        a[1] = REG(regs, 11) & 0xffffffff;
        a[2] = REG(regs, 12) & 0xffffffff;
        a[3] = REG(regs, 13) & 0xffffffff;
        a[4] = REG(regs, 14) & 0xffffffff;
        a[5] = REG(regs, 4) & 0xffffffff;
    } else {
        a[0] = REG(regs, 14);
        a[1] = REG(regs, 13);
        a[2] = REG(regs, 12);
        a[3] = REG(regs, 7);
        a[4] = REG(regs, 9);
        a[5] = REG(regs, 8);
    }
}

#ifdef KERNEL_LAYOUT
BPF_PROG_ARRAY(exit_handlers, 1); /* [0] opens.h's open_exit */
#define OPEN_EXIT_HANDLER 0
#include "opens.h"

/* The x86_64 spec of a compat call, its arguments cut to 32 bits (socketcall unpacked into
 * the call it multiplexes); NULL when it is nothing we trace. */
static __always_inline struct syscall_spec *compat_spec(struct syscall_spec *spec,
                                                        struct pending_syscall *p)
{
    u32 native = spec->compat_native;
    if (native == NO_SYSCALL)
        return NULL;
    p->info |= SC_COMPAT;
#pragma unroll
    for (int i = 0; i < 6; i++)
        p->args[i] &= 0xffffffff;
    if (native == SOCKETCALL_NATIVE) {
        u32 call = p->args[0];
        u32 unpacked[6] = {};
        if (call >= SOCKETCALLS || read_user(unpacked, sizeof(unpacked),
                                                       (void *)p->args[1]))
            return NULL;
        int key = call;
        u32 *mapped = socketcall_native.lookup(&key);
        if (!mapped || *mapped == NO_SYSCALL)
            return NULL;
        native = *mapped;
#pragma unroll
        for (int i = 0; i < 6; i++)
            p->args[i] = unpacked[i];
    }
    p->nr = native;
    return spec_of(native);
}

/* The directory a relative path was relative to, into base. */
static __always_inline void resolve_base(struct syscall_record *rec, struct syscall_spec *spec,
                                         struct pending_syscall *p)
{
    if (spec->opts & OPT_RESOLVE_CWD) {
        if (rec->ret != 0)
            return;
    } else if (spec->path1 >= 6 || rec->path1[0] == '/' || rec->path1[0] == 0) {
        return;
    }
    s64 dirfd = AT_FDCWD_ARG;
    if (spec->path1 == 1 && !(spec->opts & OPT_RESOLVE_CWD))
        dirfd = (s32)p->args[0]; /* the *at() calls: dirfd first, path second */
    struct rpath *rp = rpath_buffer();
    u64 task = this_task(), mnt = 0, dentry = 0;
    if (!rp || !dirfd_path(task, dirfd, &mnt, &dentry))
        return;
    rpath_walk(rp, task, mnt, dentry);
    rpath_copy(rp, rec->base, STR_LEN);
    rec->info |= SC_BASE | (rp->flags ? SC_DETACHED : 0);
}

/* What a dup placed on fd `fd`: its i_mode, and for a socket its family, type and peer, and
 * whether it is the server's end of a connection (accept() made it, in any process). */
static __always_inline void describe_fd(struct syscall_record *rec, s64 fd)
{
    u64 file = task_fd_file(this_task(), fd);
    rec->fd_mode = file_mode(file);
    if ((rec->fd_mode & S_IFMT_BITS) != S_IFSOCK_BITS)
        return;
    rec->addr_len = socket_peer(file, rec->tail, &rec->sock_info);
    if (accepted_file(file))
        rec->sock_info |= SOCKET_ACCEPTED;
}

/* A dup onto fd 0-2, when every rule about dups asks for a socket (1) or a socket not
 * accepted (2): whether it is one, as the fd table says of fd `fd` (oldfd before the call, the
 * fd it placed after). */
static __always_inline int dup_wanted_kernel(u64 fd, u64 wanted)
{
    u64 file = task_fd_file(this_task(), fd);
    if ((file_mode(file) & S_IFMT_BITS) != S_IFSOCK_BITS)
        return 0;
    return wanted != DUPS_OUTBOUND || !accepted_file(file);
}
#endif

/* Whether the call came in through the i386 entry (int 0x80); without the kernel's layout the
 * probes cannot tell, and no i386 call is traced. */
static __always_inline int compat_call(void)
{
#ifdef KERNEL_LAYOUT
    return in_compat_syscall(this_task());
#else
    return 0;
#endif
}

/* Whether a call some rule traces is one it may want (the filters that need its arguments
 * alone, and the user memory they point to): at entry for a stashed call, so a dropped one
 * costs no pending-map update; at exit (`at_exit`, its result `ret`) for an EXIT_LATE one. */
static __always_inline int call_wanted(struct syscall_spec *spec, struct pending_syscall *p,
                                       u64 pid_tgid, int at_exit, s64 ret)
{
    u32 nr = p->nr;
    if (spec->deref < 6) {
        u64 ptr = arg_at(p->args, spec->deref);
        if (ptr)
            read_user(&p->deref, sizeof(p->deref), (void *)ptr);
    }
    if (spec->opts & OPT_REQUIRE_ADDR) {
        u32 len = 0;
        if (!addr_ptr(spec, p, &len))
            return 0;
    }
#ifndef KERNEL_LAYOUT
    if (spec->opts & OPT_OPEN_FILTER) {
        /* Without the kernel's layout: judged here, by the path as written. openat2's mode is
         * not read (0): its setuid requests are not told apart. */
        u64 flags = nr == SYSNR_OPEN ? p->args[1] : (nr == SYSNR_OPENAT2 ? p->deref : p->args[2]);
        u64 mode = nr == SYSNR_OPEN || nr == SYSNR_CREAT ? p->args[nr == SYSNR_OPEN ? 2 : 1]
                 : (nr == SYSNR_OPENAT ? p->args[3] : SETID_MODE_BITS);
        if (!open_wanted(nr, flags, mode, arg_at(p->args, spec->path1), 0))
            return count_filtered(FILTERED_OPEN);
    }
#endif
    if (spec->opts & OPT_CONNECT_FILTER) {
        u32 len = 0;
        if (!connect_wanted(addr_ptr(spec, p, &len)) && !call_of_piped_process())
            return count_filtered(FILTERED_CONNECT);
    }
    if (spec->opts & OPT_FCNTL_DUP) {
        u32 cmd = p->args[1];
        if ((cmd != F_DUPFD_CMD && cmd != F_DUPFD_CLOEXEC_CMD) || p->args[2] > 2)
            return 0; /* not a dup, or one that cannot land on fds 0-2 */
    }
    if (spec->opts & OPT_LOW_NEWFD) {
        s32 newfd = p->args[1];
        if (nr != SYSNR_DUP && !(spec->opts & OPT_FCNTL_DUP) && (newfd < 0 || newfd > 2))
            return 0; /* dup2/dup3 onto a higher fd: nothing any rule asks for */
#ifdef KERNEL_LAYOUT
        u64 wanted = setting(SETTING_DUP_SOCKETS_ONLY);
        s64 placed = nr == SYSNR_DUP || (spec->opts & OPT_FCNTL_DUP) ? -1 : (s32)p->args[1];
        u64 judged = p->args[0];
        if (at_exit) {
            /* The fd the call placed is judged: what landed on 0-2, whatever another thread
             * did to oldfd meanwhile (closed it, or put a socket there before the call). */
            placed = placed < 0 ? ret : placed;
            if (ret < 0 || placed < 0 || placed > 2)
                return 0;
            judged = placed;
        }
        if (wanted && !dup_wanted_kernel(judged, wanted))
            return count_filtered(FILTERED_DUP);
#else
        if (!dup_wanted(pid_tgid >> 32, p->args[0]))
            return count_filtered(FILTERED_DUP);
#endif
    }
    return 1;
}

/* raw_syscalls:sys_enter and sys_exit as raw tracepoints: the perf tracepoint kind builds a
 * record of the call's arguments for every syscall of every task before the program runs; raw
 * ones pass the registers, and a call no rule traces costs one array lookup here. */
RAW_TRACEPOINT_PROBE(sys_enter)
{
    long id = ctx->args[1];
    struct syscall_spec *spec = spec_of(id);
    if (!spec || !(spec->enter | spec->compat_enter))
        return 0;
    /* Only the i386 call of this number is traced: a native call stops here (write, mmap,
     * munmap and brk share their numbers with i386 exit, link, execve and chdir). */
    if (!spec->enter && !compat_call())
        return 0;
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!cgroup_traced(cgroup_id))
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    struct pending_syscall p = {};
    p.id = id;
    p.nr = id & ~X32_SYSCALL_BIT;
    int compat = compat_call();
    syscall_args(ctx, p.args, compat);
#ifdef KERNEL_LAYOUT
    if (compat)
        spec = compat_spec(spec, &p);
    if (!spec)
        return 0;
    /* an i386 call is stashed, whether its x86_64 twin is or is EXIT_LATE */
    if (!spec->enter && !(compat && spec->exit == EXIT_LATE))
        return 0;
#else
    if (!spec->enter)
        return 0;
#endif
    u32 nr = p.nr;
    if (nr == SYSNR_EXECVE || nr == SYSNR_EXECVEAT) {
        u32 stride = p.info & SC_COMPAT ? 4 : 8;
        if (nr == SYSNR_EXECVE)
            capture_argv(p.args[1], 0, stride);
        else
            capture_argv(p.args[2], exec_flags(pid_tgid >> 32, p.args[0], p.args[4]), stride);
        return 0;
    }
    if (nr == SYSNR_EXIT_GROUP || (nr == SYSNR_EXIT && (u32)pid_tgid == pid_tgid >> 32)) {
        u32 tgid = pid_tgid >> 32;
        s32 code = p.args[0] & 0xff;
        exit_codes.update(&tgid, &code);
        return 0;
    }
    if (spec->opts & OPT_MMSG)
        return stash_mmsg(&p, (u32)pid_tgid);
    if (!call_wanted(spec, &p, pid_tgid, 0, 0))
        return 0;
    u32 tid = (u32)pid_tgid;
    pending.update(&tid, &p);
    return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
    /* The spec first: only a call sys_enter may have stashed looks in the pending map, so a
     * call no rule traces (read, write, epoll: most of a server's) costs one array lookup. */
    long id = syscall_id(ctx);
    struct syscall_spec *spec = spec_of(id);
    if (!spec)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    struct pending_syscall *stashed = NULL;
    if (spec->enter || (spec->compat_enter && compat_call()))
        stashed = pending.lookup(&tid);
    struct pending_syscall p = {};
    if (stashed) {
        p = *stashed;
        pending.delete(&tid);
        if (p.id != id)
            return 0;
    } else {
#ifdef KERNEL_LAYOUT
        /* Only a traced process's open (or i386 open: fstat's number) makes the tail call;
         * an EXIT_LATE call is judged here (native only: compat_exit is EXIT_OPEN or 0, an
         * i386 call being stashed). The native and i386 calls of a number differ: which? */
        u32 mode = spec->exit;
        if ((mode || spec->compat_exit) && compat_call())
            mode = spec->compat_exit;
        if (!mode || !cgroup_traced(bpf_get_current_cgroup_id()))
            return 0;
        if (mode == EXIT_OPEN) {
            exit_handlers.call(ctx, OPEN_EXIT_HANDLER);
            return 0;
        }
        p.id = id;
        p.nr = id & ~X32_SYSCALL_BIT;
        syscall_args(ctx, p.args, 0);
        if (!call_wanted(spec, &p, pid_tgid, 1, ctx->args[1]))
            return 0;
#else
        return 0;
#endif
    }
    spec = spec_of(p.nr);
    if (!spec)
        return 0;
    s64 ret = ctx->args[1];
    u64 tgid = pid_tgid >> 32;
    remember_fd(spec, &p, tgid, ret);
    if (!spec->emit)
        return 0;
    if (p.nr == SYSNR_SOCKET && !socket_wanted(p.args[0], ret))
        return count_filtered(FILTERED_SOCKET);
    if ((p.nr == SYSNR_ACCEPT || p.nr == SYSNR_ACCEPT4) && setting(SETTING_ACCEPT_FILTER)
        && !call_of_piped_process())
        return count_filtered(FILTERED_ACCEPT);
    if (spec->opts & OPT_LOW_NEWFD) {
        s64 newfd = (p.nr == SYSNR_DUP || (spec->opts & OPT_FCNTL_DUP)) ? ret : (s64)(s32)p.args[1];
        if (ret < 0 || newfd < 0 || newfd > 2)
            return 0;
    }
    struct syscall_record *rec = syscall_record_begin(&p, ret, bpf_get_current_cgroup_id());
    if (!rec)
        return 0;
    rec->sock_info = spec->opts & OPT_SOCK_FD0 ? fd_sock_info(tgid, p.args[0]) : 0;
    read_strings(rec, spec, &p);
#ifdef KERNEL_LAYOUT
    resolve_base(rec, spec, &p);
    if (spec->opts & OPT_LOW_NEWFD)
        describe_fd(rec, ret);
#endif
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    return 0;
}
