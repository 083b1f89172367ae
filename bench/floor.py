"""The floor peer: cauditd's hooks, each doing nothing but a cgroup-map lookup.

What any tracer on these hooks pays before it does any work: the cost of attaching raw_syscalls
sys_enter/sys_exit (as raw tracepoints, as cauditd does) and the sched exec/fork/exit
tracepoints at all. Run as a helper process by bench/overhead.py: prints "ready" once attached,
a summary line after SIGINT.

`--per-syscall` attaches the same lookup to syscalls:sys_enter_<name>/sys_exit_<name> of only the
syscalls the default rules need instead of raw_syscalls, to measure what attaching where the
syscalls are would save (issue 14). Both kinds ride the kernel's one sys_enter/sys_exit hook: an
enabled syscall tracepoint of either kind puts every task's syscalls on the traced slow path,
the per-syscall kind then runs the program only for its own syscall.

`--perf-tracepoint` attaches the lookup to raw_syscalls sys_enter/sys_exit as perf tracepoints
(BPF_PROG_TYPE_TRACEPOINT, what cauditd used before issue 14) instead of raw tracepoints: the
kind that builds a perf record of each call's number and arguments before the program runs.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

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

SYSCALL_HOOKS
TRACEPOINT_PROBE(sched, sched_process_exec) { return lookup_cgroup(); }
TRACEPOINT_PROBE(sched, sched_process_fork) { return lookup_cgroup(); }
TRACEPOINT_PROBE(sched, sched_process_exit) { return lookup_cgroup(); }
"""
RAW_TRACEPOINTS = """
RAW_TRACEPOINT_PROBE(sys_enter) { return lookup_cgroup(); }
RAW_TRACEPOINT_PROBE(sys_exit) { return lookup_cgroup(); }
"""
PERF_TRACEPOINTS = """
TRACEPOINT_PROBE(raw_syscalls, sys_enter) { return lookup_cgroup(); }
TRACEPOINT_PROBE(raw_syscalls, sys_exit) { return lookup_cgroup(); }
"""
PER_SYSCALL = "int per_syscall(void *ctx) { return lookup_cgroup(); }\n"


def needed_syscalls() -> list[str]:
    """The syscalls cauditd's probes stash for the default rules (catalog.plan's enabled set)."""
    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "daemon"))
    from cauditd.probes import catalog
    from cauditd.rules import default_rules_dir, load_ruleset

    plan = catalog.plan(load_ruleset([default_rules_dir()]).needed_syscalls())
    return sorted(name for name, (enabled, _emit) in plan.items() if enabled)


def main() -> int:
    from bcc import BPF

    per_syscall = "--per-syscall" in sys.argv
    hooks = PERF_TRACEPOINTS if "--perf-tracepoint" in sys.argv else RAW_TRACEPOINTS
    bpf = BPF(text=PROGRAM.replace("SYSCALL_HOOKS", PER_SYSCALL if per_syscall else hooks))
    if per_syscall:
        for name in needed_syscalls():
            for phase in ("enter", "exit"):
                tracepoint = f"syscalls:sys_{phase}_{name}"
                if BPF.tracepoint_exists("syscalls", f"sys_{phase}_{name}"):
                    bpf.attach_tracepoint(tp=tracepoint, fn_name="per_syscall")
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
