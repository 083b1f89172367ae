"""The floor peer: cauditd's tracepoints, each doing nothing but a cgroup-map lookup.

What any tracer on these tracepoints pays before it does any work: the cost of attaching
raw_syscalls sys_enter/sys_exit and the sched exec/fork/exit tracepoints at all. Run as a helper
process by bench/overhead.py: prints "ready" once attached, a summary line after SIGINT.
"""

from __future__ import annotations

import signal
import sys
import threading

PROGRAM = r"""
BPF_HASH(cgroup_state, u64, u8, 65536);
BPF_PERCPU_ARRAY(hits, u64, 1);

static __always_inline int lookup_cgroup(void)
{
    u64 cgroup_id = bpf_get_current_cgroup_id();
    u8 *state = cgroup_state.lookup(&cgroup_id);
    if (state) {
        int zero = 0;
        u64 *n = hits.lookup(&zero);
        if (n)
            (*n)++;
    }
    return 0;
}

TRACEPOINT_PROBE(raw_syscalls, sys_enter) { return lookup_cgroup(); }
TRACEPOINT_PROBE(raw_syscalls, sys_exit) { return lookup_cgroup(); }
TRACEPOINT_PROBE(sched, sched_process_exec) { return lookup_cgroup(); }
TRACEPOINT_PROBE(sched, sched_process_fork) { return lookup_cgroup(); }
TRACEPOINT_PROBE(sched, sched_process_exit) { return lookup_cgroup(); }
"""


def main() -> int:
    from bcc import BPF

    bpf = BPF(text=PROGRAM)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    print("floor: detached", flush=True)
    bpf.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
