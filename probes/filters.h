/* filters.h: the rules' kernel-side filters on opens, connects, dups and new sockets
 * (cauditd.rules.prefilter derives them; SyscallProbes.set_kernel_filters loads them).
 *
 * Opens: prefixes and exact paths (stored with their NUL) share one LPM trie, whose entries
 * carry the modes of their shorter prefixes too (the trie answers with the longest match only);
 * file names are a hash. Values are OPEN_READ | OPEN_WRITE. With the kernel's layout the path
 * judged is the file the kernel opened (opens.h); without it, the path as written, and only
 * when it is absolute and canonical (user space resolves the others).
 * Connects: destination ports (host order), and destination networks with IPv4 as
 * IPv4-mapped IPv6 (::ffff:a.b.c.d), so a v4-mapped IPv6 destination meets the IPv4 rules.
 * Sockets: by address family, always or only when socket() returned fd 0-2 (two masks, a bit
 * per family: cauditd.rules.prefilter.domain_bit).
 */
#ifndef CAUDITD_FILTERS_H
#define CAUDITD_FILTERS_H

#define OPEN_READ 1
#define OPEN_WRITE 2
#define PATH_KEY_LEN 256
#define NAME_KEY_LEN 32
#define PATH_MASK (PATH_KEY_LEN - 1)
#define FAMILY_INET 2
#define FAMILY_INET6 10
#define SETID_MODE_BITS 06000 /* S_ISUID | S_ISGID */

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
struct net_key {
    u32 prefixlen;
    u8 addr[16];
};
BPF_HASH(connect_ports, u16, u8, 1024);
BPF_LPM_TRIE(connect_nets, struct net_key, u8, 1024);

/* What the filters dropped, per CPU: [0] opens, [1] connects and sendtos, [2] dups onto fds
 * 0-2 of fds that are not sockets, [3] new sockets, [4] accepts (cauditd_syscalls_filtered in
 * user space). */
#define FILTERED_OPEN 0
#define FILTERED_CONNECT 1
#define FILTERED_DUP 2
#define FILTERED_SOCKET 3
#define FILTERED_ACCEPT 4
BPF_PERCPU_ARRAY(filtered, u64, 5);

static __always_inline int count_filtered(int which)
{
    u64 *n = filtered.lookup(&which);
    if (n)
        (*n)++;
    return 0;
}

/* READ/WRITE of an open from its flags (creat always writes). */
static __always_inline u32 open_modes(u32 nr, u64 flags)
{
    if (nr == SYSNR_CREAT)
        return OPEN_WRITE;
    switch (flags & 3) {
    case 0: return OPEN_READ;
    case 1: return OPEN_WRITE;
    }
    return OPEN_READ | OPEN_WRITE;
}

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

/* Whether an open passes whatever its path: the filter is off, some rule wants every open of
 * these modes, or one wants opens asking for setuid/setgid bits (open(O_CREAT, 04755)). */
static __always_inline int open_passes_whatever_path(u32 modes, u64 mode)
{
    if (!setting(SETTING_OPEN_FILTER) || (setting(SETTING_OPEN_ANY_MODES) & modes))
        return 1;
    return (mode & SETID_MODE_BITS) && (setting(SETTING_OPEN_SETID) & modes);
}

/* Whether some rule may want an open of the path in `k` (whole buffer compared) with `modes`,
 * by prefix or exact path, else by the file name that starts at `name`. */
static __always_inline int open_path_wanted(struct path_key *k, const char *name, u32 modes)
{
    k->prefixlen = PATH_KEY_LEN * 8;
    u8 *wanted = open_prefixes.lookup(k);
    if (wanted && (*wanted & modes))
        return 1;
    struct name_key key = {};
    bpf_probe_read_kernel_str(key.name, NAME_KEY_LEN, name);
    wanted = open_names.lookup(&key);
    return wanted && (*wanted & modes);
}

/* An open judged by its path as written (in user memory, or a kernel copy of it). */
static __always_inline int open_wanted(u32 nr, u64 flags, u64 mode, u64 path, int in_kernel)
{
    u32 modes = open_modes(nr, flags);
    if (open_passes_whatever_path(modes, mode))
        return 1;
    int zero = 0;
    struct path_key *k = path_scratch.lookup(&zero);
    if (!k)
        return 1;
    long len = in_kernel ? bpf_probe_read_kernel_str(k->path, PATH_KEY_LEN, (void *)path)
                         : read_user_str(k->path, PATH_KEY_LEN, (void *)path);
    if (len <= 1 || len >= PATH_KEY_LEN || k->path[0] != '/')
        return 1; /* relative, cut (its last component unknown), or unreadable */
    if (!path_is_canonical(k))
        return 1;
    return open_path_wanted(k, &k->path[last_component(k, len) & PATH_MASK], modes);
}

/* The destination being judged, in a per-CPU slot rather than on the stack: constants the
 * IPv4 branch writes into a stack key would keep the verifier from merging the two branches,
 * and in sendmmsg's loop over messages that multiplies. */
struct connect_scratch {
    u8 sa[24]; /* family, port (network order), IPv4 address or IPv6 flow info and address */
    struct net_key net;
};
BPF_PERCPU_ARRAY(connect_scratch, struct connect_scratch, 1);

/* The judgement of the socket address copied into c->sa. */
static __always_inline int scratch_addr_wanted(struct connect_scratch *c)
{
    u16 family = c->sa[0] | (u16)c->sa[1] << 8;
    c->net.prefixlen = 128;
    if (family == FAMILY_INET) {
        __builtin_memset(c->net.addr, 0, 10);
        c->net.addr[10] = 0xff;
        c->net.addr[11] = 0xff;
        __builtin_memcpy(&c->net.addr[12], &c->sa[4], 4);
    } else if (family == FAMILY_INET6) {
        __builtin_memcpy(c->net.addr, &c->sa[8], 16);
    } else {
        return 1;
    }
    u16 port = (u16)c->sa[2] << 8 | c->sa[3];
    if (connect_ports.lookup(&port))
        return 1;
    return connect_nets.lookup(&c->net) != NULL;
}

/* Whether some rule may want a connect or send to the user's socket address at `ptr`. */
static __always_inline int connect_wanted(u64 ptr)
{
    if (!setting(SETTING_CONNECT_FILTER))
        return 1;
    int zero = 0;
    struct connect_scratch *c = connect_scratch.lookup(&zero);
    if (!c || !ptr || read_user(c->sa, 8, (void *)ptr))
        return 1;
    if ((c->sa[0] | (u16)c->sa[1] << 8) == FAMILY_INET6
        && read_user(&c->sa[8], 16, (void *)(ptr + 8)))
        return 1;
    return scratch_addr_wanted(c);
}

/* The same of a socket address in kernel memory (an io_uring send's, copied at its
 * preparation). */
static __always_inline int kernel_addr_wanted(u64 addr)
{
    if (!setting(SETTING_CONNECT_FILTER))
        return 1;
    int zero = 0;
    struct connect_scratch *c = connect_scratch.lookup(&zero);
    if (!c || bpf_probe_read_kernel(c->sa, sizeof(c->sa), (void *)addr))
        return 1;
    return scratch_addr_wanted(c);
}

/* Whether some rule may want the socket() of `domain` that returned `fd`. */
static __always_inline int socket_wanted(u64 domain, s64 fd)
{
    if (!setting(SETTING_SOCKET_FILTER))
        return 1;
    u32 family = domain;
    u64 bit = 1ULL << (family < 63 ? family : 63);
    if (setting(SETTING_SOCKETS_ALWAYS) & bit)
        return 1;
    return fd >= 0 && fd <= 2 && (setting(SETTING_SOCKETS_ON_STDIO) & bit);
}

#endif
