/* opens.h: open, openat, openat2 and creat, judged and reported by the file the kernel opened.
 *
 * Handled at sys_exit alone (no stash at entry): the arguments come from the task's saved user
 * registers (bpf_task_pt_regs), the opened file from the fd table at the returned fd, and its
 * path from a walk of its dentries (vfs.h). The open filter (filters.h) judges that resolved
 * path, so a symlinked directory, a dirfd, the cwd, /proc/self/root, "..", or padding past the
 * 256 bytes the path as written is cut at cannot hide an open of a watched file. A failed open
 * opened nothing: it is judged by its path as written, as without the layout, and only when
 * some rule can match a failed open at all (SETTING_OPEN_FAILED); a relative one carries the
 * directory it was relative to.
 *
 * Cost of an open no rule wants: the register read, 3 reads to reach the file, 2 per path
 * component (vfs.h), one trie and one hash lookup. Of a failed open no rule wants: nothing more.
 */
#ifndef CAUDITD_OPENS_H
#define CAUDITD_OPENS_H

#define CREAT_FLAGS 01101 /* O_CREAT | O_WRONLY | O_TRUNC */
#define OPEN_RESOLVED 1   /* path is the opened file */
#define OPEN_BASE 2       /* path is the directory a relative path as written was relative to */
#define OPEN_TRUNCATED 4  /* the resolved path was too long or deep: its head is missing */
#define OPEN_DETACHED 8   /* not below the process's root (another mount namespace's file,
                             a memfd, a pseudo file) */
#define OPEN_COMPAT 16
#define OPEN_IO_URING 32 /* submitted through an io_uring ring (io_uring.c) */
#define SOCKETCALLS 21

BPF_ARRAY(socketcall_native, u32, SOCKETCALLS);

struct open_record {
    struct event_header h;
    u32 nr;
    u32 info; /* OPEN_* */
    s64 ret;
    s64 dirfd;
    u64 flags;
    u64 mode;
    u64 ino;
    u32 dev;
    u32 i_mode;
    char raw[STR_LEN];
    char path[RPATH_SIZE];
};

/* Whether some rule may want the open of the resolved path in `rp` with `modes`. A path the
 * walk could not finish is let through. */
static __always_inline int resolved_open_wanted(struct rpath *rp, u32 modes)
{
    u32 pos = rp->pos;
    if (rp->flags || pos < RPATH_SIZE - PATH_KEY_LEN)
        return 1; /* cut, detached, or longer than the trie's keys */
    int zero = 0;
    struct path_key *k = path_scratch.lookup(&zero);
    if (!k)
        return 1;
    bpf_probe_read_kernel_str(k->path, PATH_KEY_LEN, &rp->buf[pos & RPATH_MASK]);
    return open_path_wanted(k, &rp->buf[rp->leaf & RPATH_MASK], modes);
}

/* An open's facts between the two halves of open_exit. Kept in a per-CPU slot so that the
 * many ways of computing them (four syscalls, compat or not, opened or failed) reach the path
 * walk as one verifier state instead of one each. */
struct open_call {
    u64 flags;
    u64 mode;
    u64 path;  /* the path as written (user pointer) */
    u64 mnt;   /* what to walk: the opened file, or the directory of a relative path */
    u64 dentry;
    s64 dirfd;
    u64 inode; /* of the opened file: its number and device are read once the open is sent */
    struct file_id fid;
    u32 nr;
    u32 info;
    u32 modes;
    u32 free;
    u32 raw_kernel; /* `path` points to kernel memory (an io_uring request's copy) */
    u32 _pad;
};
BPF_PERCPU_ARRAY(open_calls, struct open_call, 1);

/* What an open opened (its file, to walk), or for one that opened nothing, whether the filter
 * drops it and else the directory a relative path was relative to; 0 when dropped. */
static __always_inline int open_target(struct open_call *c, u64 task, s64 ret, int has_fd)
{
    c->modes = open_modes(c->nr, c->flags);
    c->free = open_passes_whatever_path(c->modes, c->mode);
    c->mnt = 0;
    c->dentry = 0;
    c->inode = 0;
    __builtin_memset(&c->fid, 0, sizeof(c->fid));
    u64 file = ret >= 0 && has_fd ? task_fd_file(task, ret) : 0;
    if (file) {
        u64 f[SPAN_WORDS(SPAN_FILE)] = {}; /* its inode, and the (mount, dentry) to walk */
        SPAN_READ(f, file, SPAN_FILE);
        c->inode = SPAN_U64(f, SPAN_FILE, OFF_FILE_INODE);
        c->fid.mode = kread_u16(c->inode, OFF_INODE_MODE);
        /* FIFOs opened by path show who talks through them (pipes.py) when a rule asks. */
        if ((c->fid.mode & S_IFMT_BITS) == S_IFIFO_BITS && setting(SETTING_PIPES)) {
            c->free = 1;
            u32 tgid = bpf_get_current_pid_tgid() >> 32;
            u8 one = 1;
            pipe_relays.update(&tgid, &one);
        }
        c->mnt = SPAN_U64(f, SPAN_FILE, OFF_FILE_PATH + OFF_PATH_MNT);
        c->dentry = SPAN_U64(f, SPAN_FILE, OFF_FILE_PATH + OFF_PATH_DENTRY);
        c->info |= OPEN_RESOLVED;
        return 1;
    }
    if (ret < 0 && !setting(SETTING_OPEN_FAILED) && setting(SETTING_OPEN_FILTER))
        return count_filtered(FILTERED_OPEN);
    if (!c->free && !open_wanted(c->nr, c->flags, c->mode, c->path, c->raw_kernel))
        return count_filtered(FILTERED_OPEN);
    char first = 0;
    if (c->raw_kernel)
        bpf_probe_read_kernel(&first, 1, (void *)c->path);
    else
        read_user(&first, 1, (void *)c->path);
    u64 mnt = 0, dentry = 0;
    if (first != '/' && dirfd_path(task, c->dirfd, &mnt, &dentry)) {
        c->mnt = mnt;
        c->dentry = dentry;
        c->info |= OPEN_BASE;
    }
    return 1;
}

/* The call's arguments, what it opened, and whether the filter can drop it whatever its path;
 * 0 when it is done with (dropped, or not traced). */
static __always_inline int open_facts(struct bpf_raw_tracepoint_args *ctx, struct open_call *c,
                                      struct syscall_spec *spec, long id, s64 ret, u64 task)
{
    c->nr = id;
    c->info = 0;
    if (in_compat_syscall(task)) {
        c->nr = spec->compat_native;
        c->info = OPEN_COMPAT;
        spec = spec_of(c->nr);
        if (!spec)
            return 0;
    }
    if (!spec->exit)
        return 0;
    u64 a[6] = {};
    syscall_args(ctx, a, c->info & OPEN_COMPAT);
    u32 nr = c->nr;
    c->dirfd = AT_FDCWD_ARG;
    c->flags = CREAT_FLAGS;
    c->mode = a[1];
    if (nr == SYSNR_OPEN) {
        c->flags = a[1];
        c->mode = a[2];
    } else if (nr == SYSNR_OPENAT) {
        c->dirfd = (s32)a[0];
        c->flags = a[2];
        c->mode = a[3];
    } else if (nr == SYSNR_OPENAT2) {
        u64 how[2] = {}; /* struct open_how: flags, mode */
        c->dirfd = (s32)a[0];
        read_user(how, sizeof(how), (void *)a[2]);
        c->flags = how[0];
        c->mode = how[1];
    }
    c->path = arg_at(a, spec->path1);
    c->raw_kernel = 0;
    return open_target(c, task, ret, 1);
}

/* Walk what the open opened, judge the resolved path, and send the record. */
static __always_inline int emit_open(struct open_call *c, struct rpath *rp, u64 task,
                                     u64 cgroup_id, s64 ret)
{
    rp->flags = 0;
    if (c->mnt)
        rpath_walk(rp, task, c->mnt, c->dentry);
    u32 info = c->info;
    if ((info & OPEN_RESOLVED) && !c->free && !resolved_open_wanted(rp, c->modes))
        return count_filtered(FILTERED_OPEN);
    if (rp->flags & RPATH_TRUNCATED)
        info |= OPEN_TRUNCATED;
    if (rp->flags & RPATH_DETACHED)
        info |= OPEN_DETACHED;
    if (c->inode)
        inode_number(c->inode, &c->fid);
    send_own_held_forks();
    struct open_record *rec = events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_lost();
        return 0;
    }
    fill_header(&rec->h, EVENT_OPEN, cgroup_id);
    rec->nr = c->nr;
    rec->info = info;
    rec->ret = ret;
    rec->dirfd = c->dirfd;
    rec->flags = c->flags;
    rec->mode = c->mode;
    rec->ino = c->fid.ino;
    rec->dev = c->fid.dev;
    rec->i_mode = c->fid.mode;
    if (c->raw_kernel)
        bpf_probe_read_kernel_str(rec->raw, STR_LEN, (void *)c->path);
    else
        read_user_str(rec->raw, STR_LEN, (void *)c->path);
    rec->path[0] = 0;
    if (info & (OPEN_RESOLVED | OPEN_BASE))
        rpath_copy(rp, rec->path, RPATH_SIZE);
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    return 0;
}

/* Tail-called from sys_exit (a program of its own, so the verifier walks the path loop apart
 * from the rest of sys_exit). */
int open_exit(struct bpf_raw_tracepoint_args *ctx)
{
    s64 ret = ctx->args[1];
    long id = syscall_id(ctx);
    struct syscall_spec *spec = spec_of(id);
    int zero = 0;
    struct open_call *c = open_calls.lookup(&zero);
    struct rpath *rp = rpath_buffer();
    if (!spec || !c || !rp)
        return 0;
    u64 cgroup_id = bpf_get_current_cgroup_id(); /* traced: sys_exit checked before the call */
    u64 task = this_task();
    if (!open_facts(ctx, c, spec, id, ret, task))
        return 0;
    return emit_open(c, rp, task, cgroup_id, ret);
}

/* A socket's family and type (as sock_info), and its peer as a struct sockaddr in `out`;
 * returns the address length (0 when not IPv4/IPv6). */
static __always_inline u32 socket_peer(u64 file, char *out, u32 *sock_info)
{
    u64 sock = kread_u64(file, OFF_FILE_PRIVATE);
    u64 sk = kread_u64(sock, OFF_SOCKET_SK);
    *sock_info = sock_info_of(sock, sk);
    u16 family = sock_family(*sock_info);
    u16 port = kread_u16(sk, OFF_SK_DPORT); /* network order, as in a sockaddr */
    __builtin_memcpy(out, &family, 2);
    __builtin_memcpy(out + 2, &port, 2);
    if (family == FAMILY_INET) {
        bpf_probe_read_kernel(out + 4, 4, (void *)(sk + OFF_SK_DADDR));
        return 8;
    }
    if (family == FAMILY_INET6) {
        __builtin_memset(out + 4, 0, 4);
        bpf_probe_read_kernel(out + 8, 16, (void *)(sk + OFF_SK_V6_DADDR));
        return 24;
    }
    return 0;
}

#endif
