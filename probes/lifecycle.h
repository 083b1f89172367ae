/* lifecycle.h: forks held in the kernel until the process they made is worth naming.
 *
 * A forking server makes a process per request that never execs and does nothing a rule
 * watches; a fork and an exit record each would be most of what it costs. So, unless a rule
 * matches fork or exit events (SETTING_LIFECYCLE, from the rules' needed syscalls), a fork's
 * record is kept in held_forks (by child pid) instead of sent, and:
 * - the first record of that process (exec, a syscall, an open, an io_uring request) sends it
 *   just before itself (send_held_forks), with its still-held ancestors' first, oldest first,
 *   so user space builds the parent chain (ppid, aname, start time, pipes) as if sent at once;
 * - its exit deletes it and costs no record, unless it forked a child that is still held (a
 *   double fork): then the exit is kept with it, and sent after the child's fork if the child
 *   is ever named, so the grandchild's chain still reaches the server.
 * LRU-bounded: a record pushed out by HELD_FORKS newer ones is lost, and that process is later
 * named from /proc by user space, as a process forked before the daemon started is.
 */
#ifndef CAUDITD_LIFECYCLE_H
#define CAUDITD_LIFECYCLE_H

#define HELD_FORKS 16384
#define LINEAGE_MAX 4     /* held ancestors sent with a record (beyond: named from /proc) */
#define HELD_PARENT 1     /* forked a child that is (or was) held */
#define HELD_EXITED 2     /* exited: exit_ts, status and exit_comm are set */

struct fork_record {
    struct event_header h;
    u32 parent_pid;
    u32 child_pid;
    u64 clone_flags;
    u32 nr;
    u32 _pad;
    struct exe_fields exe;
};

struct exit_record {
    struct event_header h;
    s32 status;
    u32 _pad;
};

struct held_fork {
    struct fork_record fork;
    u64 exit_ts;
    s32 status;
    u32 flags; /* HELD_* */
    char exit_comm[16];
};
BPF_TABLE("lru_hash", u32, struct held_fork, held_forks, HELD_FORKS);
BPF_PERCPU_ARRAY(held_scratch, struct held_fork, 1);

static __always_inline int lifecycle_held(void)
{
    return !setting(SETTING_LIFECYCLE);
}

/* Send a held fork; unless `keep`, only by the CPU whose delete took it from the map (two of
 * its descendants acting at once on two CPUs send it once). */
static __always_inline void send_fork(u32 *pid, struct held_fork *held, int keep)
{
    struct fork_record *rec = events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_lost();
        return;
    }
    __builtin_memcpy(rec, &held->fork, sizeof(*rec));
    if (!keep && held_forks.delete(pid) != 0) {
        events.ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
        return;
    }
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

static __always_inline void send_held_exit(struct held_fork *held)
{
    struct exit_record *rec = events.ringbuf_reserve(sizeof(*rec));
    if (!rec) {
        count_lost();
        return;
    }
    __builtin_memcpy(&rec->h, &held->fork.h, sizeof(rec->h));
    rec->h.ts_ns = held->exit_ts;
    rec->h.kind = EVENT_EXIT;
    rec->h.pid = held->fork.child_pid;
    rec->h.tid = held->fork.child_pid;
    __builtin_memcpy(rec->h.comm, held->exit_comm, sizeof(rec->h.comm));
    rec->status = held->status;
    rec->_pad = 0;
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
}

/* Before any record of process `pid`: the held forks of it and its held ancestors, oldest
 * first, then the exits of those ancestors that are gone. One hash lookup when nothing is. */
static __always_inline void send_held_forks(u32 pid)
{
    if (!held_forks.lookup(&pid))
        return;
    u32 chain[LINEAGE_MAX] = {};
    chain[0] = pid;
    int depth = 1;
#pragma unroll
    for (int i = 1; i < LINEAGE_MAX; i++) {
        struct held_fork *held = held_forks.lookup(&chain[i - 1]);
        if (!held)
            break;
        u32 parent = held->fork.parent_pid;
        if (!held_forks.lookup(&parent))
            break;
        chain[i] = parent;
        depth = i + 1;
    }
#pragma unroll
    for (int i = LINEAGE_MAX - 1; i >= 0; i--) {
        if (i >= depth)
            continue;
        struct held_fork *held = held_forks.lookup(&chain[i]);
        if (!held)
            continue;
        /* an exited one stays held: its exit goes after its descendants' forks */
        send_fork(&chain[i], held, held->flags & HELD_EXITED);
    }
#pragma unroll
    for (int i = LINEAGE_MAX - 1; i >= 0; i--) {
        if (i >= depth)
            continue;
        struct held_fork *held = held_forks.lookup(&chain[i]);
        if (held) {
            send_held_exit(held);
            held_forks.delete(&chain[i]);
        }
    }
}

static __always_inline void send_own_held_forks(void)
{
    send_held_forks(bpf_get_current_pid_tgid() >> 32);
}

/* A fork in a traced cgroup: held (when no rule wants forks) or sent; 1 when held. */
static __always_inline int hold_fork(struct held_fork *held)
{
    u32 parent = held->fork.parent_pid, child = held->fork.child_pid;
    struct held_fork *parent_held = held_forks.lookup(&parent);
    if (parent_held)
        parent_held->flags |= HELD_PARENT;
    held->exit_ts = 0;
    held->status = 0;
    held->flags = 0;
    __builtin_memset(held->exit_comm, 0, sizeof(held->exit_comm));
    held_forks.update(&child, held);
    return 1;
}

/* At the exit of process `pid`: 1 when its fork was never sent (no record for the exit). */
static __always_inline int exit_of_held(u32 pid, s32 status)
{
    struct held_fork *held = held_forks.lookup(&pid);
    if (!held)
        return 0;
    if (!(held->flags & HELD_PARENT)) {
        held_forks.delete(&pid);
        return 1;
    }
    held->exit_ts = bpf_ktime_get_ns();
    held->status = status;
    held->flags |= HELD_EXITED;
    bpf_get_current_comm(held->exit_comm, sizeof(held->exit_comm));
    return 1;
}

#endif
