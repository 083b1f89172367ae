"""A container whose metadata comes after its first findings (the hold-back ran out under load):
those findings, stored and still counting repeats in memory, take its name, image and pod."""

from __future__ import annotations

import dataclasses

from cauditd.config import RulesConfig
from cauditd.detection import Detector
from cauditd.findings import Finding
from cauditd.store import FindingFilter, FindingStore
from tests.rules.synth import CONTAINER, open_write

WRITE_BELOW_ETC = "Write below etc"


async def stored(store: FindingStore, **filters: object) -> list[Finding]:
    await store.flush()
    found, _ = await store.query(FindingFilter(rules=(WRITE_BELOW_ETC,), **filters))  # type: ignore[arg-type]
    return found


async def test_findings_made_before_the_metadata_take_the_name(store: FindingStore) -> None:
    unnamed = dataclasses.replace(CONTAINER, name="", image="", labels={})
    other = dataclasses.replace(CONTAINER, id="beef" * 16, name="", image="", labels={})
    detector = Detector(RulesConfig(paths=[]), store)
    detector.process(open_write("/etc/cauditd-late", container=unnamed))
    detector.process(open_write("/etc/cauditd-late", container=other))
    (before,) = await stored(store, containers=(CONTAINER.id,))
    assert before.container.name == unnamed.short_id and before.container.image == ""

    detector.container_named(CONTAINER)
    detector.process(open_write("/etc/cauditd-late", container=unnamed))  # a repeat, counted
    detector.flush_updates()
    (after,) = await stored(store, containers=("web",))
    assert after.id == before.id and after.count == 2
    assert (after.container.name, after.container.image) == ("web", CONTAINER.image)
    assert (after.container.pod, after.container.namespace) == ("web-0", "prod")
    (untouched,) = await stored(store, containers=(other.id,))
    assert untouched.container.name == other.short_id  # another container keeps its short id


async def test_a_named_finding_is_never_renamed(store: FindingStore) -> None:
    detector = Detector(RulesConfig(paths=[]), store)
    detector.process(open_write("/etc/cauditd-named"))
    renamed = dataclasses.replace(CONTAINER, name="impostor")
    detector.container_named(renamed)
    (finding,) = await stored(store)
    assert finding.container.name == "web"
    renaming = store.name_container(dataclasses.replace(finding.container, name="impostor"))
    assert renaming is not None and await renaming == 0
