"""The event pipeline's cost: events per CPU-second through EventPipeline.on_batch (resolve,
hold-back, process table, the default rules, the store) next to RuleEngine.match alone on the
same events, in interleaved rounds of the same run; and the records of bench/throughput.py's
workload (resolved openat of /etc/passwd) from their bytes, decode included, through the same
pipeline: that benchmark's daemon path without the kernel, the ring buffer or the noise of a
loaded machine. Those records are decoded both by the compiled decoder (the daemon's default,
probes/_fastrecords.c) and by records.py alone, each with and without the pipeline after it.

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
from typing import Any

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


PATHS = {
    "full": "EventPipeline.on_batch (whole path)",
    "match": "RuleEngine.match alone",
    "from_bytes": "openat records from their bytes: decode + on_batch",
    "from_bytes_py": "the same, decoded by records.py alone",
    "decode": "openat records: decode alone",
    "decode_py": "the same, decoded by records.py alone",
}


async def measure(rounds: int, seconds: float) -> dict[str, list[float]]:
    """Events per CPU-second of each of PATHS, `rounds` interleaved rounds."""
    fast = records.compiled_decoder()
    if fast is None:
        raise SystemExit("the compiled record decoder is not built (python3 hatch_build.py)")
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

            def from_bytes(decode: records.Decoder) -> Callable[[list[bytes]], None]:
                return lambda batch: pipeline.on_batch(
                    [e for e in map(decode, batch) if e is not None])

            def decode_only(decode: records.Decoder) -> Callable[[list[bytes]], None]:
                def run(batch: list[bytes]) -> None:
                    for raw in batch:
                        decode(raw)
                return run

            work, raw = batches(), open_records()
            paths: dict[str, tuple[Callable[[Any], None], list[Any]]] = {
                "full": (pipeline.on_batch, work), "match": (match_only, work),
                "from_bytes": (from_bytes(fast), raw),
                "from_bytes_py": (from_bytes(records.decode), raw),
                "decode": (decode_only(fast), raw), "decode_py": (decode_only(records.decode), raw),
            }  # fmt: skip
            for fn, items in paths.values():
                rate(fn, items, 0.2)
            rates: dict[str, list[float]] = {name: [] for name in paths}
            for _ in range(rounds):
                for name, (fn, items) in paths.items():
                    rates[name].append(rate(fn, items, seconds))
                await asyncio.sleep(0)  # let the store's writer take what was found
        finally:
            await store.stop()
    return rates


def run(quick: bool) -> list[Result]:
    rounds, seconds = (5, 0.2) if quick else (15, 0.3)
    rates = asyncio.run(measure(rounds, seconds))
    ratios = sorted(f / m for f, m in zip(rates["full"], rates["match"], strict=True))
    fast = sorted(f / p for f, p in zip(rates["decode"], rates["decode_py"], strict=True))
    whole = sorted(f / p for f, p in zip(rates["from_bytes"], rates["from_bytes_py"],
                                          strict=True))
    share = {
        "full": f"{median(ratios):.2f} matching (range {ratios[0]:.2f}-{ratios[-1]:.2f})",
        "match": "1.00",
        "from_bytes": f"{median(whole):.2f}x records.py's (range {whole[0]:.2f}-{whole[-1]:.2f})",
        "from_bytes_py": "",
        "decode": f"{median(fast):.2f}x records.py's (range {fast[0]:.2f}-{fast[-1]:.2f})",
        "decode_py": "",
    }
    result = Result(title=TITLE, columns=["path", "events per CPU-second", "share of the path"])
    for name, label in PATHS.items():
        result.rows.append([label, f"{si(median(rates[name]))}/s", share[name]])
    result.notes.append(
        f"{sum(len(b) for b in batches())} synthetic syscall events of a busy web container "
        f"(bench_rules' workload without flows and DNS), batches of {BATCH}, default rules; "
        f"median of {rounds} interleaved rounds of {seconds:g} CPU-seconds each. The openat "
        "records are decoded by the compiled decoder unless the row says records.py.")
    result.data["pipeline"] = {"full": median(rates["full"]), "match": median(rates["match"]),
                               "ratio": median(ratios), "from_bytes": median(rates["from_bytes"]),
                               "from_bytes_py": median(rates["from_bytes_py"])}
    return [result]


def main() -> None:
    for result in run("--quick" in sys.argv):
        print(result.markdown())


if __name__ == "__main__":
    main()
