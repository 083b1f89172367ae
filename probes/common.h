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

#define CGROUP_TRACKED 1
#define CGROUP_IGNORED 2
#define MAX_ANCESTOR_LEVELS 6

enum setting { SETTING_TRACK_HOST = 0, SETTING_COUNT };

BPF_HASH(cgroup_state, u64, u8, 65536);
BPF_HASH(watch_roots, u64, u8, 256);
BPF_ARRAY(settings, u64, SETTING_COUNT);
/* Failed ring buffer reserves, per CPU; user space sums them into cauditd_events_lost. */
BPF_PERCPU_ARRAY(lost_events, u64, 1);
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);

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
    int key = SETTING_TRACK_HOST;
    u64 *track_host = settings.lookup(&key);
    return track_host && *track_host;
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

/* Records are submitted with BPF_RB_NO_WAKEUP: user space drains on a short timer, which costs
 * the traced workload far less than a wakeup per record (0.6x vs 0.38x on an openat loop). */

#endif
