"""A host following fleet rule rollout: it looks at the bucket's manifest, fetches a new set,
loads it after the local rules as a local reload does, and says on the bucket's status subject
what it did. The set applied last is kept on disk and loaded at start (rules_config).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cauditd.config import RulesConfig
from cauditd.findings import rfc3339_ns
from cauditd.fleet import rollout
from cauditd.fleet.publisher import nats_call

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

log = logging.getLogger(__name__)

POLL_S = 2.0
CURRENT = "current"
Reload = Callable[[RulesConfig], Awaitable[list[str]]]
Publish = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclasses.dataclass(slots=True)
class RuleSources:
    """Where a host's rules come from: its local config, and how to reload with a new one."""

    local_rules: Callable[[], RulesConfig]
    rule_paths: Callable[[RulesConfig], list[Path]]
    reload: Reload


class RuleFollower:
    """The rule set this host runs (`digest`), and following `bucket` when one is set."""

    def __init__(self, bucket: str, root: Path, sources: RuleSources) -> None:
        self.bucket = bucket
        self.root = root
        self.sources = sources
        self.digest = ""
        self.refused: dict[str, Any] = {}
        self._revision = 0

    def rules_config(self, local: RulesConfig) -> RulesConfig:
        """The local rules plus the fleet's set this host last applied (if it follows one)."""
        current = self.root / CURRENT
        if not self.bucket or not current.is_dir():
            return local
        return dataclasses.replace(local, paths=[*local.paths, str(current)])

    def load_digest(self) -> None:
        """The running set's digest: the applied fleet set's, else local:<digest of the files>."""
        current = self.root / CURRENT / rollout.MANIFEST_KEY
        if self.bucket and current.is_file():
            with contextlib.suppress(OSError, rollout.RolloutError):
                self.digest = rollout.Manifest.from_bytes(current.read_bytes()).digest
                return
        paths = self.sources.rule_paths(self.sources.local_rules())
        self.digest = "local:" + rollout.local_digest(paths)

    async def run(self, js: JetStreamContext, status_subject: str, publish: Publish,
                  note_error: Callable[..., None]) -> None:
        """Look at the bucket every POLL_S until cancelled."""
        from nats.js.errors import BucketNotFoundError

        while True:
            try:
                report = await self.check(js)
                if report is not None:
                    await publish(status_subject, report)
            except BucketNotFoundError:
                note_error(f"fleet: rules bucket {self.bucket} does not exist yet (nothing "
                           "pushed); the local rules run", level=logging.INFO)
            except Exception as exc:  # broker away, a manifest we cannot read: look again later
                note_error(f"fleet: rules bucket {self.bucket}: {type(exc).__name__} {exc}")
            await asyncio.sleep(POLL_S)

    async def check(self, js: JetStreamContext) -> dict[str, Any] | None:
        """Apply the bucket's manifest if it is new to this host; the status report, if any."""
        from nats.js.errors import KeyNotFoundError

        kv = await nats_call(js.key_value(self.bucket))
        try:
            entry = await nats_call(kv.get(rollout.MANIFEST_KEY))
        except KeyNotFoundError:
            return None
        if entry.revision == self._revision or entry.value is None:
            return None
        manifest = rollout.Manifest.from_bytes(entry.value)
        if manifest.digest in (self.digest, self.refused.get("digest")):
            self._revision = entry.revision or 0
            return None
        files = {name: (await nats_call(kv.get(name))).value or b"" for name in manifest.files}
        if not manifest.verify(files):
            log.info("fleet: rule set %s is still being pushed; looking again", manifest.digest)
            return None
        errors = await self.apply(manifest, files)
        self._revision = entry.revision or 0
        return {"digest": manifest.digest, "ok": not errors, "errors": errors[:50],
                "running": self.digest, "time": rfc3339_ns(time.time_ns())}

    async def apply(self, manifest: rollout.Manifest, files: dict[str, bytes]) -> list[str]:
        """Install the set and reload with it; a refused set leaves the running rules alone."""
        directory = await asyncio.to_thread(rollout.install, files, self.root, manifest)
        local = self.sources.local_rules()
        errors = await self.sources.reload(
            dataclasses.replace(local, paths=[*local.paths, str(directory)]))
        if errors:
            log.error("fleet: rule set %s refused, the running rules stay: %d problem(s)",
                      manifest.digest, len(errors))
            self.refused = {"digest": manifest.digest, "errors": errors[:20]}
            return errors
        await asyncio.to_thread(self._point_current, directory)
        self.digest = manifest.digest
        self.refused = {}
        log.info("fleet: running rule set %s (%d file(s))", manifest.digest, len(files))
        return []

    def _point_current(self, directory: Path) -> None:
        """root/current -> directory, switched in one rename; older sets removed."""
        staging = self.root / f".{CURRENT}.tmp"
        staging.unlink(missing_ok=True)
        staging.symlink_to(directory.name)
        staging.rename(self.root / CURRENT)
        rollout.prune(self.root, [directory])
