"""The naive peer: a tracer in the style of bcc's tools/ (opensnoop, execsnoop, tcpconnect).

The same tracepoints as cauditd (raw_syscalls sys_enter/sys_exit, sched exec/fork/exit) and the
same syscalls (open, openat, openat2, execve, execveat, connect), but no kernel-side filter by
cgroup: every such event on the host goes through a perf buffer (64 pages per CPU, bcc's
default wakeup per event) to one Python callback, which decodes it and only then asks whether
the cgroup is a container. Prints "ready" once attached and, after SIGINT, a summary line.
"""

from __future__ import annotations

import ctypes
import signal
import sys

PROGRAM = r"""
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>

struct event {
    u64 ts_ns;
    u64 cgroup_id;
    u32 pid;
    u32 kind;      /* syscall number, or 1000 exec, 1001 fork, 1002 exit */
    s64 ret;
    char comm[16];
    char path[256];
};
struct pending { u64 path_ptr; u32 nr; };

BPF_HASH(pending_args, u32, struct pending, 16384);
BPF_PERCPU_ARRAY(scratch, struct event, 1);
BPF_PERF_OUTPUT(events);

static __always_inline int watched(u32 nr, u64 *args, u64 *path_ptr)
{
    switch (nr) {
    case 2:   *path_ptr = args[0]; return 1;   /* open */
    case 257: *path_ptr = args[1]; return 1;   /* openat */
    case 437: *path_ptr = args[1]; return 1;   /* openat2 */
    case 59:  *path_ptr = args[0]; return 1;   /* execve */
    case 322: *path_ptr = args[1]; return 1;   /* execveat */
    case 42:  *path_ptr = 0; return 1;         /* connect */
    }
    return 0;
}

static __always_inline struct event *fresh(u32 kind)
{
    int zero = 0;
    struct event *e = scratch.lookup(&zero);
    if (!e)
        return 0;
    e->ts_ns = bpf_ktime_get_ns();
    e->cgroup_id = bpf_get_current_cgroup_id();
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->kind = kind;
    e->ret = 0;
    e->path[0] = 0;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    return e;
}

TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    struct pending p = {};
    u64 a[6];
    bpf_probe_read_kernel(a, sizeof(a), args->args);
    if (!watched(args->id, a, &p.path_ptr))
        return 0;
    p.nr = args->id;
    u32 tid = bpf_get_current_pid_tgid();
    pending_args.update(&tid, &p);
    return 0;
}

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct pending *p = pending_args.lookup(&tid);
    if (!p)
        return 0;
    struct event *e = fresh(p->nr);
    if (e) {
        e->ret = args->ret;
        if (p->path_ptr)
            bpf_probe_read_user_str(e->path, sizeof(e->path), (void *)p->path_ptr);
        events.perf_submit(args, e, sizeof(*e));
    }
    pending_args.delete(&tid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    struct event *e = fresh(1000);
    if (e) {
        TP_DATA_LOC_READ_STR(e->path, filename, sizeof(e->path));
        events.perf_submit(args, e, sizeof(*e));
    }
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_fork)
{
    struct event *e = fresh(1001);
    if (e)
        events.perf_submit(args, e, sizeof(*e));
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    struct event *e = fresh(1002);
    if (e)
        events.perf_submit(args, e, sizeof(*e));
    return 0;
}
"""


class Event(ctypes.Structure):
    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("kind", ctypes.c_uint32),
        ("ret", ctypes.c_int64),
        ("comm", ctypes.c_char * 16),
        ("path", ctypes.c_char * 256),
    ]


class NaiveTracer:
    """Counts what reaches Python; containers are told apart in user space (a cgroup dict)."""

    def __init__(self) -> None:
        self.seen = 0
        self.in_containers = 0
        self.lost = 0
        self.cgroups: dict[int, bool] = {}

    def on_event(self, _cpu: int, data: int, _size: int) -> None:
        event = ctypes.cast(data, ctypes.POINTER(Event)).contents
        self.seen += 1
        _record = (event.comm.decode(errors="replace"), event.path.decode(errors="replace"))
        if self.cgroups.setdefault(event.cgroup_id, event.cgroup_id > 1):
            self.in_containers += 1

    def on_lost(self, count: int) -> None:
        self.lost += count


def main() -> int:
    from bcc import BPF

    bpf = BPF(text=PROGRAM)
    tracer = NaiveTracer()
    bpf["events"].open_perf_buffer(tracer.on_event, page_cnt=64, lost_cb=tracer.on_lost)
    running = [True]

    def stop(*_args: object) -> None:
        running[0] = False

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    while running[0]:
        bpf.perf_buffer_poll(timeout=100)
    print(f"naive: events={tracer.seen} lost={tracer.lost}", flush=True)
    bpf.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
