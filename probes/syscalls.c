/* syscalls.c: the file, privilege, isolation and network syscalls of traced cgroups.
 *
 * raw_syscalls sys_enter stashes the arguments per thread; sys_exit pairs them with the return
 * value and emits one record. What to capture is data, not code: user space fills syscall_spec
 * (by syscall number) with which arguments are C strings, which is a socket address, which is a
 * pointer to dereference, and whether the syscall is enabled at all (from the rules'
 * needed_syscalls; exec, fork and exit are always on for the process table).
 *
 * Opens are filtered by path too, and connects/sendtos by destination: user space derives
 * from the rules which paths (prefixes, exact paths, file names) with which access modes, and
 * which destination ports and networks, any rule can match (cauditd.rules.prefilter) and fills
 * open_prefixes/open_names and connect_ports/connect_nets; what nothing matches is counted in
 * filtered[] and dropped at sys_enter, before it costs a pending-map update. Relative paths,
 * paths with "//", "." or ".." components, and sockets other than IPv4/IPv6 always pass: user
 * space resolves or judges them. So does a call whose path or address cannot be read at entry.
 *
 * Cost: an array lookup per syscall on the whole host (disabled syscalls stop there), then one
 * cgroup_state lookup; a traced syscall adds a pending-map update and a ~650-byte record; a
 * dropped open costs a path read, a trie lookup, a scan of the path and a hash lookup instead
 * (measured: the open loop at ~0.77x of bare vs the floor's 0.85x; ~0.84x without the scan).
 * Caveats: x86_64 syscall numbers only (32-bit compat syscalls are not traced); strings are read
 * at entry for the filters and at exit for the record (a racing thread could change them in
 * between: the same TOCTOU every syscall tracer has; an LSM hook would close it); paths are cut
 * at 256 bytes, mount's fstype at 64, socket addresses at 128.
 */
#include "common.h"

#define ARG_NONE 255
#define OPT_ADDRLEN_PTR 1
#define OPT_REQUIRE_ADDR 2
#define OPT_SOCKET_RESULT 4
#define OPT_SOCK_FD0 8
#define OPT_LOW_NEWFD 16
#define OPT_MEMFD_RESULT 32
#define OPT_OPEN_FILTER 64
#define OPT_CONNECT_FILTER 128
#define FAMILY_INET 2
#define FAMILY_INET6 10
#define SOCKET_KNOWN 0x80000000U
#define AT_EMPTY_PATH_FLAG 0x1000
#define STR_LEN 256
#define ADDR_LEN 128

struct syscall_spec {
    u8 enabled;  /* stash at entry (side effects only when emit is 0) */
    u8 emit;
    u8 path1;
    u8 path2;
    u8 str3;
    u8 addr;
    u8 addrlen;
    u8 deref;
    u32 opts;
    u32 _pad;
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
    u32 _pad;
    char path1[STR_LEN];
    char tail[STR_LEN]; /* second path, or socket address; mount's fstype at +192 */
};

/* The open filter. Prefixes and exact paths (stored with their NUL) share one trie, whose
 * entries carry the modes of their shorter prefixes too (the trie answers with the longest
 * match only); file names are a hash. Values are OPEN_READ | OPEN_WRITE. */
#define OPEN_READ 1
#define OPEN_WRITE 2
#define PATH_KEY_LEN 256
#define NAME_KEY_LEN 32
struct path_key {
    u32 prefixlen; /* in bits: the whole buffer on lookups */
    char path[PATH_KEY_LEN];
};
struct name_key {
    char name[NAME_KEY_LEN];
};
BPF_LPM_TRIE(open_prefixes, struct path_key, u8, 4096);
BPF_HASH(open_names, struct name_key, u8, 1024);
BPF_PERCPU_ARRAY(path_scratch, struct path_key, 1);
/* The connect filter: destination ports (host order), and destination networks with IPv4 as
 * IPv4-mapped IPv6 (::ffff:a.b.c.d). */
struct net_key {
    u32 prefixlen;
    u8 addr[16];
};
BPF_HASH(connect_ports, u16, u8, 1024);
BPF_LPM_TRIE(connect_nets, struct net_key, u8, 1024);

/* What the filters dropped, per CPU: [0] opens, [1] connects and sendtos, [2] dups onto fds
 * 0-2 of fds that are not sockets (cauditd_syscalls_filtered in user space). */
#define FILTERED_OPEN 0
#define FILTERED_CONNECT 1
#define FILTERED_DUP 2
BPF_PERCPU_ARRAY(filtered, u64, 3);

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

static __always_inline void capture_argv(const char *const *argv, u32 flags)
{
    int zero = 0;
    struct exec_args *scratch = exec_scratch.lookup(&zero);
    if (!scratch)
        return;
    scratch->argc = 0;
    scratch->flags = flags;
#pragma unroll
    for (int i = 0; i < ARGV_MAX; i++) {
        const char *arg = NULL;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) || !arg)
            break;
        if (bpf_probe_read_user_str(scratch->argv[i], ARG_LEN, arg) < 0)
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
    if (spec->opts & OPT_SOCKET_RESULT) {
        u32 info = SOCKET_KNOWN;
        if (p->nr == NR_SOCKET) {
            info |= (u32)(p->args[0] & 0xffff) << 16 | (u32)(p->args[1] & 0xff);
        } else {
            u64 listener = tgid << 32 | (u32)p->args[0];
            u32 *known = socket_fds.lookup(&listener);
            if (known)
                info = *known;
        }
        socket_fds.update(&key, &info);
    }
}

static __always_inline u32 read_addr(struct syscall_record *rec, struct syscall_spec *spec,
                                     struct pending_syscall *p)
{
    u64 ptr = arg_at(p->args, spec->addr);
    u64 len_arg = arg_at(p->args, spec->addrlen);
    u32 len = len_arg;
    if (spec->opts & OPT_ADDRLEN_PTR) {
        len = 0;
        if (len_arg)
            bpf_probe_read_user(&len, sizeof(len), (void *)len_arg);
    }
    if (!ptr)
        return 0;
    if (len > ADDR_LEN)
        len = ADDR_LEN;
    len &= 0xff;
    if (len == 0 || bpf_probe_read_user(rec->tail, len, (void *)ptr))
        return 0;
    return len;
}

static __always_inline void read_strings(struct syscall_record *rec, struct syscall_spec *spec,
                                         struct pending_syscall *p)
{
    rec->path1[0] = 0;
    rec->tail[0] = 0;
    rec->addr_len = 0;
    if (spec->path1 < 6)
        bpf_probe_read_user_str(rec->path1, STR_LEN, (void *)arg_at(p->args, spec->path1));
    if (spec->str3 < 6) {
        bpf_probe_read_user_str(rec->tail, 192, (void *)arg_at(p->args, spec->path2));
        bpf_probe_read_user_str(rec->tail + 192, 64, (void *)arg_at(p->args, spec->str3));
    } else if (spec->path2 < 6) {
        bpf_probe_read_user_str(rec->tail, STR_LEN, (void *)arg_at(p->args, spec->path2));
    } else if (spec->addr < 6) {
        rec->addr_len = read_addr(rec, spec, p);
    }
}

static __always_inline u32 open_modes(struct pending_syscall *p)
{
    u64 flags;
    if (p->nr == NR_CREAT)
        return OPEN_WRITE;
    if (p->nr == NR_OPEN)
        flags = p->args[1];
    else if (p->nr == NR_OPENAT2)
        flags = p->deref;
    else
        flags = p->args[2];
    switch (flags & 3) {
    case 0: return OPEN_READ;
    case 1: return OPEN_WRITE;
    }
    return OPEN_READ | OPEN_WRITE;
}

#define PATH_MASK (PATH_KEY_LEN - 1)

/* Whether an absolute path has no empty, "." or ".." component and no trailing "/": only then
 * is it the path user space reports (it normalizes the others) and the filter may judge it.
 * The loops carry no state but their index, and leave the length unnarrowed, so the verifier
 * walks each step once (the NUL ends the first loop rather than a comparison with len, which
 * would hand the second loop a different exact len from every exit). */
static __always_inline int path_is_canonical(struct path_key *k)
{
    for (u32 i = 0; i < PATH_KEY_LEN - 1; i++) {
        char c0 = k->path[i];
        if (c0 == 0)
            break;
        if (c0 != '/')
            continue;
        char c1 = k->path[(i + 1) & PATH_MASK];
        if (c1 == '/' || c1 == 0)
            return 0;
        if (c1 != '.')
            continue;
        char c2 = k->path[(i + 2) & PATH_MASK];
        if (c2 == '/' || c2 == 0)
            return 0;
        if (c2 == '.') {
            char c3 = k->path[(i + 3) & PATH_MASK];
            if (c3 == '/' || c3 == 0)
                return 0;
        }
    }
    return 1;
}

/* Where the last component of an absolute path starts. */
static __always_inline u32 last_component(struct path_key *k, long len)
{
    for (u32 j = 0; j < PATH_KEY_LEN - 1; j++) {
        long i = len - 2 - j;
        if (i < 0)
            break;
        if (k->path[i & PATH_MASK] == '/')
            return i + 1;
    }
    return 1;
}

static __always_inline int open_wanted(struct pending_syscall *p, u64 path)
{
    int key = SETTING_OPEN_FILTER;
    u64 *on = settings.lookup(&key);
    if (!on || !*on)
        return 1;
    u32 modes = open_modes(p);
    key = SETTING_OPEN_ANY_MODES;
    u64 *any_modes = settings.lookup(&key);
    if (any_modes && (*any_modes & modes))
        return 1;
    int zero = 0;
    struct path_key *k = path_scratch.lookup(&zero);
    if (!k)
        return 1;
    long len = bpf_probe_read_user_str(k->path, PATH_KEY_LEN, (void *)path);
    if (len <= 1 || k->path[0] != '/')
        return 1;
    k->prefixlen = PATH_KEY_LEN * 8;
    u8 *wanted = open_prefixes.lookup(k);
    if (wanted && (*wanted & modes))
        return 1;
    if (!path_is_canonical(k))
        return 1;
    struct name_key name = {};
    bpf_probe_read_kernel_str(name.name, NAME_KEY_LEN, &k->path[last_component(k, len) & PATH_MASK]);
    wanted = open_names.lookup(&name);
    return wanted && (*wanted & modes);
}

static __always_inline int connect_wanted(struct syscall_spec *spec, struct pending_syscall *p)
{
    int key = SETTING_CONNECT_FILTER;
    u64 *on = settings.lookup(&key);
    if (!on || !*on)
        return 1;
    u64 ptr = arg_at(p->args, spec->addr);
    u8 head[8] = {}; /* family, port (network order), IPv4 address or IPv6 flow info */
    if (!ptr || bpf_probe_read_user(head, sizeof(head), (void *)ptr))
        return 1;
    u16 family = head[0] | (u16)head[1] << 8;
    struct net_key net = {.prefixlen = 128};
    if (family == FAMILY_INET) {
        net.addr[10] = 0xff;
        net.addr[11] = 0xff;
        __builtin_memcpy(&net.addr[12], &head[4], 4);
    } else if (family == FAMILY_INET6) {
        if (bpf_probe_read_user(net.addr, sizeof(net.addr), (void *)(ptr + 8)))
            return 1;
    } else {
        return 1;
    }
    u16 port = (u16)head[2] << 8 | head[3];
    if (connect_ports.lookup(&port))
        return 1;
    return connect_nets.lookup(&net) != NULL;
}

/* A dup onto fd 0-2: when every rule about dups asks for a socket (the reverse-shell rule),
 * only dups of a socket this process is known to hold pass. */
static __always_inline int dup_wanted(u64 tgid, u64 oldfd)
{
    int key = SETTING_DUP_SOCKETS_ONLY;
    u64 *sockets_only = settings.lookup(&key);
    if (!sockets_only || !*sockets_only)
        return 1;
    u64 fd_key = tgid << 32 | (u32)oldfd;
    return socket_fds.lookup(&fd_key) != NULL;
}

static __always_inline int count_filtered(int which)
{
    u64 *n = filtered.lookup(&which);
    if (n)
        (*n)++;
    return 0;
}

TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    long id = args->id;
    if (id < 0 || id >= SYSCALL_MAX)
        return 0;
    u32 nr = id;
    struct syscall_spec *spec = syscall_spec.lookup(&nr);
    if (!spec || !spec->enabled)
        return 0;
    u64 cgroup_id = bpf_get_current_cgroup_id();
    if (!cgroup_traced(cgroup_id))
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if (nr == NR_EXECVE) {
        capture_argv((const char *const *)args->args[1], 0);
        return 0;
    }
    if (nr == NR_EXECVEAT) {
        capture_argv((const char *const *)args->args[2],
                     exec_flags(pid_tgid >> 32, args->args[0], args->args[4]));
        return 0;
    }
    if (nr == NR_EXIT_GROUP || (nr == NR_EXIT && (u32)pid_tgid == pid_tgid >> 32)) {
        u32 tgid = pid_tgid >> 32;
        s32 code = args->args[0] & 0xff;
        exit_codes.update(&tgid, &code);
        return 0;
    }
    struct pending_syscall p = {};
    p.nr = nr;
#pragma unroll
    for (int i = 0; i < 6; i++)
        p.args[i] = args->args[i];
    if (spec->deref < 6) {
        u64 ptr = arg_at(p.args, spec->deref);
        if (ptr)
            bpf_probe_read_user(&p.deref, sizeof(p.deref), (void *)ptr);
    }
    /* Decided here, not at exit, so a dropped call costs no pending-map update. */
    if ((spec->opts & OPT_REQUIRE_ADDR) && !arg_at(p.args, spec->addr))
        return 0;
    if ((spec->opts & OPT_OPEN_FILTER) && !open_wanted(&p, arg_at(p.args, spec->path1)))
        return count_filtered(FILTERED_OPEN);
    if ((spec->opts & OPT_CONNECT_FILTER) && !connect_wanted(spec, &p))
        return count_filtered(FILTERED_CONNECT);
    if (spec->opts & OPT_LOW_NEWFD) {
        s32 newfd = p.args[1];
        if (nr != NR_DUP && (newfd < 0 || newfd > 2))
            return 0; /* dup2/dup3 onto a higher fd: nothing any rule asks for */
        if (!dup_wanted(pid_tgid >> 32, p.args[0]))
            return count_filtered(FILTERED_DUP);
    }
    u32 tid = (u32)pid_tgid;
    pending.update(&tid, &p);
    return 0;
}

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
    struct pending_syscall *stashed = pending.lookup(&tid);
    if (!stashed)
        return 0;
    struct pending_syscall p = *stashed;
    pending.delete(&tid);
    if (p.nr != args->id)
        return 0;
    struct syscall_spec *spec = syscall_spec.lookup(&p.nr);
    if (!spec)
        return 0;
    s64 ret = args->ret;
    u64 tgid = pid_tgid >> 32;
    remember_fd(spec, &p, tgid, ret);
    if (!spec->emit)
        return 0;
    if (spec->opts & OPT_LOW_NEWFD) {
        s64 newfd = p.nr == NR_DUP ? ret : (s64)(s32)p.args[1];
        if (newfd < 0 || newfd > 2)
            return 0;
    }
    struct syscall_record *rec = events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_lost();
        return 0;
    }
    fill_header(&rec->h, EVENT_SYSCALL, bpf_get_current_cgroup_id());
    rec->nr = p.nr;
    rec->ret = ret;
#pragma unroll
    for (int i = 0; i < 6; i++)
        rec->args[i] = p.args[i];
    rec->deref = p.deref;
    rec->_pad = 0;
    rec->sock_info = 0;
    if (spec->opts & OPT_SOCK_FD0) {
        u64 key = tgid << 32 | (u32)p.args[0];
        u32 *known = socket_fds.lookup(&key);
        if (known)
            rec->sock_info = *known;
    }
    read_strings(rec, spec, &p);
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    return 0;
}
