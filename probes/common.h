/* Shared by every syscall-side probe: which cgroups are traced, and counting what is lost.
 *
 * cgroup_state holds what user space decided about a cgroup: TRACKED (a container we watch) or
 * IGNORED. A cgroup user space has not classified yet passes when one of its ancestors is a
 * watch root (the parent of container cgroups: /docker, system.slice, kubepods...), so the first
 * exec of a new container is never missed while user space catches up. Cost on an untracked
 * host process: one hash lookup, plus at most MAX_ANCESTOR_LEVELS helper calls for an unknown
 * cgroup (user space classifies it after its first event).
 */
#ifndef CAUDITD_COMMON_H
#define CAUDITD_COMMON_H

#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

/* User memory is read through these two names, not BCC's bpf_probe_read_user[_str]: BCC's front
 * end looks each call to those up in /proc/kallsyms (a fallback for kernels before 5.5) and
 * builds a map of every kernel symbol to do it, ~1.2 s of each start-up. The ring buffer needs
 * 5.8, so the helpers are always there. */
static long (*read_user)(void *dst, u32 size, const void *src) =
    (void *)BPF_FUNC_probe_read_user;
static long (*read_user_str)(void *dst, u32 size, const void *src) =
    (void *)BPF_FUNC_probe_read_user_str;

#define CGROUP_TRACKED 1
#define CGROUP_IGNORED 2
#define MAX_ANCESTOR_LEVELS 6

enum setting {
    SETTING_TRACK_HOST = 0,
    SETTING_OPEN_FILTER,    /* 1: opens pass only as open_prefixes/open_names say (syscalls.c) */
    SETTING_OPEN_ANY_MODES, /* OPEN_READ/OPEN_WRITE opens that pass whatever their path */
    SETTING_CONNECT_FILTER, /* 1: connects/sendtos pass only as connect_ports/_nets say */
    SETTING_DUP_SOCKETS_ONLY, /* 1: dups onto fds 0-2 pass only when the old fd is a socket */
    SETTING_OPEN_FAILED,    /* 1: failed opens are judged by their path as written; 0: dropped */
    SETTING_OPEN_SETID,     /* OPEN_READ/OPEN_WRITE opens asking for setuid/setgid bits that pass */
    SETTING_PIPES,          /* 1: connects (and accepts) of piped processes pass (fds 0 and 1
                               pipes, or a FIFO opened by path: call_of_piped_process), and
                               opens of FIFOs (shells wired to the network, pipes.py) */
    SETTING_LIFECYCLE,      /* 1: some rule matches forks or exits: send each at once
                               (0: held until the process is named, lifecycle.h) */
    SETTING_SOCKET_FILTER,  /* 1: new sockets pass only as the two masks below say */
    SETTING_SOCKETS_ALWAYS, /* address families (a bit each, >= 63 share bit 63) that pass */
    SETTING_SOCKETS_ON_STDIO, /* ... that pass when socket() returned fd 0, 1 or 2 */
    SETTING_ENV_NAMES,      /* 1: env_names holds every variable the rules ask of proc.env: an
                               environment past ENV_CAPTURE is walked for them (process.c) */
    SETTING_ACCEPT_FILTER,  /* 1: accepts pass only from piped processes (as SETTING_PIPES) */
    SETTING_COUNT
};

BPF_HASH(cgroup_state, u64, u8, 65536);
BPF_HASH(watch_roots, u64, u8, 256);
BPF_ARRAY(settings, u64, SETTING_COUNT);
/* Failed ring buffer reserves, per CPU; user space sums them into cauditd_events_lost. */
BPF_PERCPU_ARRAY(lost_events, u64, 1);
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

static __always_inline u64 setting(int key)
{
    u64 *value = settings.lookup(&key);
    return value ? *value : 0;
}

/* Per-thread state between a syscall's entry and its exit (and the scheduler tracepoints that
 * fire in between: fork, exec). LRU so threads killed mid-syscall cannot fill it. */
struct pending_syscall {
    u64 args[6];
    u64 deref;  /* a u64 read through a pointer argument at entry (open_how.flags, clone3 flags) */
    u32 nr;     /* the x86_64 number of what the call does */
    u32 id;     /* the number as the call was made (an i386 one for compat calls) */
    u32 info;   /* SC_COMPAT */
    u32 _pad;
};
#define SC_COMPAT 1 /* made through the 32-bit entry (int 0x80): an i386 syscall number */
#define AT_FDCWD_ARG -100
BPF_TABLE("lru_hash", u32, struct pending_syscall, pending, 16384);

/* argv captured at execve entry (user memory is gone once exec succeeds), joined to the
 * sched_process_exec record by the old thread id. Too big for the stack: built in a per-CPU
 * scratch slot, then copied into the per-thread map. */
#define ARGV_MAX 16
#define ARG_LEN 128
#define EXEC_FROM_MEMFD 1
struct exec_args {
    u32 argc;
    u32 flags;
    char argv[ARGV_MAX][ARG_LEN];
};
BPF_PERCPU_ARRAY(exec_scratch, struct exec_args, 1);
BPF_TABLE("lru_hash", u32, struct exec_args, exec_args, 4096);

/* exit_group()/exit() status by thread group, read at sched_process_exit. */
BPF_TABLE("lru_hash", u32, s32, exit_codes, 8192);

/* Sockets and memfds by (tgid << 32 | fd), learnt from socket/accept/memfd_create results:
 * lets exec say it runs a memfd and, without the kernel's layout (which reads the fd table
 * instead), connect/dup2 say what kind of fd they act on. Values: family << 16 | type for
 * sockets, 1 for memfds. */
BPF_TABLE("lru_hash", u64, u32, socket_fds, 65536);
BPF_TABLE("lru_hash", u64, u32, memfd_fds, 4096);
/* Parent tgid of forked processes until they exit: fds are inherited, so a child's fexecve of
 * the parent's memfd (fork, then execveat(fd, "", AT_EMPTY_PATH)) is found under the parent. */
BPF_TABLE("lru_hash", u32, u32, parent_of, 8192);
#ifdef KERNEL_LAYOUT
/* Processes that may relay a shell's pipes with no pipe on their own stdio, while a rule asks
 * about pipes: those that opened a FIFO by path (opens.h), and those that held the other ends
 * of a child's stdin or stdout pipe at its exec (process.c: socat EXEC:sh,pipes). Their
 * connects and accepts are judged as a piped process's (syscalls.c). A fork of one is one too
 * (it holds the same); an exec keeps the mark only while a pipe or FIFO is among its fds past
 * its stdio (process.c's holds_fifo), so runc's init, which opens its exec FIFO and execs the
 * container's first process, does not leave every container's process tree marked. By tgid,
 * LRU-bounded (an evicted relay's connects are judged by its stdio). */
BPF_TABLE("lru_hash", u32, u8, pipe_relays, 8192);
#endif

#define EVENT_EXEC 1
#define EVENT_SYSCALL 2
#define EVENT_FORK 3
#define EVENT_EXIT 4
#define EVENT_CGROUP 5
#define EVENT_OPEN 6

/* The running executable by identity (struct exe_id in vfs.h), in records of processes user
 * space may meet first (syscalls, forks); zeros without the kernel's layout. */
struct exe_fields {
    u64 exe_ino;
    u32 exe_dev;
    u32 exe_foreign;
};

struct event_header {
    u64 ts_ns;
    u64 cgroup_id;
    u32 kind;
    u32 pid;
    u32 tid;
    u32 uid;
    u32 gid;
    u32 _pad;
    char comm[16];
};

static __always_inline int cgroup_traced(u64 cgroup_id)
{
    u8 *state = cgroup_state.lookup(&cgroup_id);
    if (state)
        return *state == CGROUP_TRACKED;
#pragma unroll
    for (int level = 1; level <= MAX_ANCESTOR_LEVELS; level++) {
        u64 ancestor = bpf_get_current_ancestor_cgroup_id(level);
        if (ancestor == 0 || ancestor == cgroup_id)
            break;
        if (watch_roots.lookup(&ancestor))
            return 1;
    }
    if (setting(SETTING_TRACK_HOST))
        return 1;
    /* Remember the verdict so a busy host process costs one lookup per event from now on;
     * user space overrides it with track() when the runtime reports a container here. */
    u8 ignored = CGROUP_IGNORED;
    cgroup_state.insert(&cgroup_id, &ignored);
    return 0;
}

static __always_inline void count_lost(void)
{
    int zero = 0;
    u64 *lost = lost_events.lookup(&zero);
    if (lost)
        (*lost)++;
}

static __always_inline void fill_header(struct event_header *h, u32 kind, u64 cgroup_id)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 uid_gid = bpf_get_current_uid_gid();
    h->ts_ns = bpf_ktime_get_ns();
    h->cgroup_id = cgroup_id;
    h->kind = kind;
    h->pid = pid_tgid >> 32;
    h->tid = (u32)pid_tgid;
    h->uid = (u32)uid_gid;
    h->gid = uid_gid >> 32;
    h->_pad = 0;
    bpf_get_current_comm(h->comm, sizeof(h->comm));
}

#include "lifecycle.h"

/* Records are submitted with BPF_RB_NO_WAKEUP: user space drains on a short timer, which costs
 * the traced workload far less than a wakeup per record (0.6x vs 0.38x on an openat loop). */

#endif
