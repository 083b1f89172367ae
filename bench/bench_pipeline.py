"""The event pipeline's cost: events per CPU-second through EventPipeline.on_batch (resolve,
hold-back, process table, the default rules, the store) next to RuleEngine.match alone on the
same events, in interleaved rounds of the same run; and the records of bench/throughput.py's
workload (resolved openat of /etc/passwd) from their bytes, decode included, through the same
pipeline: that benchmark's daemon path without the kernel, the ring buffer or the noise of a
loaded machine.

The ratio is the share of the pipeline's time that is matching: what the rest of the event path
(container, process table, taps, per-event isolation, load counting) costs on top. CPU time of
the measuring thread, not wall time, so other jobs on the machine move it less.

Run: .venv/bin/python bench/bench_pipeline.py [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.rules.synth import BASH, CONTAINER, INIT, RUNC, WORKER

from bench_rules import workload
from cauditd.config import RulesConfig, StoreConfig
from cauditd.containers.cgroups import CgroupTree
from cauditd.detection import Detector
from cauditd.events import ContainerInfo, Event, SyscallEvent
from cauditd.pipeline import EventPipeline
from cauditd.probes import catalog, records
from cauditd.proctable import ProcessTable
from cauditd.rules import RuleEngine, default_rules_dir, load_ruleset
from cauditd.store import FindingStore
from common import Result, median, si

TITLE = "Event pipeline (syscall events per CPU-second, one thread)"
CGROUP_ID = 77
BATCH = 512


class Registry:
    """Every event's cgroup is the synthetic web container; its metadata is known."""

    def __init__(self, root: Path) -> None:
        self.tree = CgroupTree(root)
        self.on_metadata: list[Callable[[str], None]] = []

    def resolve(self, cgroup_id: int) -> ContainerInfo | None:
        return CONTAINER

    def metadata_pending(self, container_id: str) -> bool:
        return False


def batches() -> list[list[Event]]:
    events: list[Event] = [e for e in workload() if isinstance(e, SyscallEvent)]
    for event in events:
        event.cgroup_id = CGROUP_ID  # type: ignore[attr-defined]
    return [events[i : i + BATCH] for i in range(0, len(events), BATCH)]


def open_records(count: int = 4096) -> list[list[bytes]]:
    """Resolved openat records as probes/syscalls.c writes them: what bench/throughput.py's
    workload (`bench_loop open`: open and close /etc/passwd) sends with the filters off."""
    nr = catalog.BY_NAME["openat"].nr
    raw = [
        records.OPEN.pack(
            n, CGROUP_ID, records.EVENT_OPEN, BASH.pid, BASH.pid, 0, 0, 0, b"bench_loop",
            nr, records.OPEN_RESOLVED, 3, records.AT_FDCWD, 0, 0, 1234, 8, 0o100644,
            b"/etc/passwd", b"/etc/passwd",
        )
        for n in range(count)
    ]
    return [raw[i : i + BATCH] for i in range(0, count, BATCH)]


def rate(fn: Callable[[list[Event]], None], work: list[list[Event]], seconds: float) -> float:
    """Events per CPU-second of this thread over whole passes of at least `seconds`."""
    done, start = 0, time.thread_time()
    while True:
        for batch in work:
            fn(batch)
        done += sum(len(b) for b in work)
        elapsed = time.thread_time() - start
        if elapsed >= seconds:
            return done / elapsed


async def measure(rounds: int, seconds: float) -> tuple[list[float], list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        store = FindingStore(Path(tmp) / "findings.db", StoreConfig())
        await store.start()
        try:
            detector = Detector(RulesConfig(paths=[]), store)
            proctable = ProcessTable(proc_root=tmp)  # an empty /proc: the table knows all
            proctable.seed({p.pid: p for p in (RUNC, INIT, WORKER, BASH)})
            pipeline = EventPipeline(Registry(Path(tmp)), proctable, detector)
            engine = RuleEngine(load_ruleset([default_rules_dir()]), suppress_window_s=60)

            def match_only(batch: list[Event]) -> None:
                for event in batch:
                    engine.match(event)

            def from_bytes(batch: list[bytes]) -> None:
                decode = records.decode
                pipeline.on_batch([e for e in map(decode, batch) if e is not None])

            work, raw = batches(), open_records()
            rate(pipeline.on_batch, work, 0.2)
            rate(match_only, work, 0.2)
            rate(from_bytes, raw, 0.2)
            full, matching, decoded = [], [], []
            for _ in range(rounds):
                full.append(rate(pipeline.on_batch, work, seconds))
                matching.append(rate(match_only, work, seconds))
                decoded.append(rate(from_bytes, raw, seconds))
                await asyncio.sleep(0)  # let the store's writer take what was found
        finally:
            await store.stop()
    return full, matching, decoded


def run(quick: bool) -> list[Result]:
    rounds, seconds = (5, 0.2) if quick else (15, 0.3)
    full, matching, decoded = asyncio.run(measure(rounds, seconds))
    ratios = sorted(f / m for f, m in zip(full, matching, strict=True))
    result = Result(title=TITLE, columns=["path", "events per CPU-second", "share of the path"])
    result.rows.append(["EventPipeline.on_batch (whole path)", f"{si(median(full))}/s",
                        f"{median(ratios):.2f} matching (range {ratios[0]:.2f}-{ratios[-1]:.2f})"])
    result.rows.append(["RuleEngine.match alone", f"{si(median(matching))}/s", "1.00"])
    result.rows.append(["openat records from their bytes: decode + on_batch",
                        f"{si(median(decoded))}/s", "(bench/throughput.py's workload)"])
    result.notes.append(
        f"{sum(len(b) for b in batches())} synthetic syscall events of a busy web container "
        f"(bench_rules' workload without flows and DNS), batches of {BATCH}, default rules; "
        f"median of {rounds} interleaved rounds of {seconds:g} CPU-seconds each.")
    result.data["pipeline"] = {"full": median(full), "match": median(matching),
                               "ratio": median(ratios), "from_bytes": median(decoded)}
    return [result]


def main() -> None:
    for result in run("--quick" in sys.argv):
        print(result.markdown())


if __name__ == "__main__":
    main()
