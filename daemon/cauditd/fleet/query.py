"""Fleet questions asked of JetStream (for cauditctl): findings by subject filters through ordered
consumers from a start time, each host's newest heartbeat, rule pushes and their status.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cauditd.findings import Priority
from cauditd.fleet import rollout
from cauditd.fleet.connection import HOSTS_SUFFIX
from cauditd.fleet.subjects import Subjects

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

IDLE_S = 2.0  # a consumer that says nothing this long while catching up has nothing more


@dataclass(slots=True)
class FindingQuery:
    """What `cauditctl fleet findings` selects: host and priority go into subject filters; rule
    and container are checked on the decoded finding."""

    since_ns: int | None = None
    hosts: list[str] = field(default_factory=list)
    min_priority: Priority | None = None
    rules: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)

    def subject_filters(self, subjects: Subjects) -> list[str]:
        filters: list[str] = []
        hosts: list[str | None] = [*self.hosts] or [None]
        for host in hosts:
            filters += subjects.finding_filters(host, self.min_priority)
        return filters

    def matches(self, doc: dict[str, Any]) -> bool:
        if self.rules and doc.get("rule") not in self.rules:
            return False
        container = doc.get("container") or {}
        names = (container.get("name"), container.get("id"), container.get("full_id"))
        return not self.containers or any(c in names for c in self.containers)


@dataclass(frozen=True, slots=True)
class StreamMessage:
    seq: int
    subject: str
    doc: dict[str, Any]


async def _consumer(js: JetStreamContext, stream: str, subject: str, since_ns: int | None,
                    deliver_last_per_subject: bool = False) -> Any:
    from nats.js import api

    config = api.ConsumerConfig(inactive_threshold=30.0)
    policy = api.DeliverPolicy.ALL
    if deliver_last_per_subject:
        policy = api.DeliverPolicy.LAST_PER_SUBJECT
    elif since_ns is not None:
        policy = api.DeliverPolicy.BY_START_TIME
        config.opt_start_time = datetime.datetime.fromtimestamp(since_ns / 1e9, datetime.UTC)
    return await js.subscribe(subject, stream=stream, ordered_consumer=True,
                              deliver_policy=policy, config=config)


def _decode(msg: Msg) -> StreamMessage | None:
    try:
        doc = json.loads(msg.data)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    return StreamMessage(msg.metadata.sequence.stream, msg.subject, doc)


async def _catch_up(sub: Any) -> list[StreamMessage]:
    """Everything the consumer has up to now (its pending count reaching zero)."""
    out: list[StreamMessage] = []
    info = await sub.consumer_info()
    if info.num_pending == 0 and not sub.pending_msgs and not info.delivered.stream_seq:
        return out
    while True:
        try:
            msg = await sub.next_msg(timeout=IDLE_S)
        except TimeoutError:
            return out
        decoded = _decode(msg)
        if decoded is not None:
            out.append(decoded)
        if msg.metadata.num_pending == 0:
            return out


async def read(js: JetStreamContext, stream: str, filters: list[str], since_ns: int | None,
               *, last_per_subject: bool = False) -> tuple[list[StreamMessage], list[Any]]:
    """The stream's messages on `filters` (one ordered consumer each), in stream order, and the
    subscriptions (still open, for --follow)."""
    subs = [await _consumer(js, stream, f, since_ns, last_per_subject) for f in filters]
    batches = await asyncio.gather(*(_catch_up(sub) for sub in subs))
    merged = sorted((m for batch in batches for m in batch), key=lambda m: m.seq)
    return merged, subs


async def follow(subs: list[Any], seen_seq: int) -> AsyncIterator[StreamMessage]:
    """New messages on any subscription, as they come (each consumer is in stream order)."""
    queue: asyncio.Queue[StreamMessage] = asyncio.Queue()

    async def pump(sub: Any) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                decoded = _decode(await sub.next_msg(timeout=3600))
                if decoded is not None and decoded.seq > seen_seq:
                    await queue.put(decoded)

    pumps = [asyncio.create_task(pump(sub)) for sub in subs]
    try:
        while True:
            yield await queue.get()
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def findings(js: JetStreamContext, stream: str, subjects: Subjects, query: FindingQuery,
                   ) -> tuple[list[dict[str, Any]], list[Any], int]:
    """Matching findings in stream order, the open subscriptions and the last sequence seen."""
    messages, subs = await read(js, stream, query.subject_filters(subjects), query.since_ns)
    last = max((m.seq for m in messages), default=0)
    return [m.doc for m in messages if query.matches(m.doc)], subs, last


async def hosts(js: JetStreamContext, stream: str, subjects: Subjects) -> list[dict[str, Any]]:
    """Each host's newest heartbeat, with its age in seconds."""
    messages, subs = await read(js, stream + HOSTS_SUFFIX, [subjects.heartbeat("*")], None,
                                last_per_subject=True)
    await _close(subs)
    now = time.time()
    out = []
    for m in messages:
        doc = dict(m.doc)
        with contextlib.suppress(KeyError, ValueError):
            stamp = doc["time"].replace("Z", "+00:00")
            doc["age_s"] = round(now - datetime.datetime.fromisoformat(stamp[:26] + stamp[29:])
                                 .timestamp(), 1)
        out.append(doc)
    return sorted(out, key=lambda d: str(d.get("host")))


async def rules_status(js: JetStreamContext, stream: str, subjects: Subjects,
                       bucket: str) -> dict[str, Any]:
    """The bucket's pushed set and, per host, what it runs and what it said of the last push."""
    from nats.js.errors import KeyNotFoundError

    kv = await js.key_value(bucket)
    try:
        entry = await kv.get(rollout.MANIFEST_KEY)
        manifest = rollout.Manifest.from_bytes(entry.value or b"")
        pushed: dict[str, Any] | None = {"digest": manifest.digest, "files": sorted(manifest.files),
                                         "pushed_at": manifest.pushed_at,
                                         "pushed_by": manifest.pushed_by}
    except KeyNotFoundError:
        pushed = None
    messages, subs = await read(js, stream + HOSTS_SUFFIX,
                                [subjects.rules_status(bucket) + ".*"], None,
                                last_per_subject=True)
    await _close(subs)
    reports = {str(m.doc.get("host")): m.doc for m in messages}
    beats = {str(h.get("host")): h for h in await hosts(js, stream, subjects)}
    rows = []
    for host in sorted(set(reports) | set(beats)):
        report, beat = reports.get(host, {}), beats.get(host, {})
        rows.append({"host": host, "running": beat.get("rules_digest") or report.get("running"),
                     "last_offered": report.get("digest"), "ok": report.get("ok"),
                     "errors": report.get("errors") or []})
    return {"bucket": bucket, "pushed": pushed, "hosts": rows}


async def push_rules(js: JetStreamContext, bucket: str, files: dict[str, bytes], *,
                     replicas: int, pushed_by: str) -> rollout.Manifest:
    """Put the files, then the manifest that makes followers load them, then drop stale keys."""
    from nats.js.errors import BucketNotFoundError

    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        kv = await js.create_key_value(bucket=bucket, history=5, replicas=replicas,
                                       description="cauditd rule files (cauditctl fleet rules)")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = rollout.Manifest.of(files, pushed_by=pushed_by, pushed_at=stamp)
    for name, content in files.items():
        await kv.put(rollout.file_key(name), content)
    await kv.put(rollout.MANIFEST_KEY, manifest.to_bytes())
    with contextlib.suppress(Exception):  # older keys are harmless: followers read the manifest
        for key in await kv.keys():
            if key != rollout.MANIFEST_KEY and key not in files:
                await kv.delete(key)
    return manifest


async def _close(subs: list[Any]) -> None:
    for sub in subs:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

