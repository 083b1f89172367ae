"""What a process chooses never grows the engine's memory in bytes: long suppression key fields
and threshold keys are kept as digests (equal values stay equal, different ones stay apart)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cauditd.rules import RuleSetError, load_ruleset
from cauditd.rules.engine import KEY_VALUES_MAX, suppression_key
from cauditd.rules.threshold import VALUE_MAX, bounded
from tests.rules.helpers import engine_for, rule_toml, write
from tests.rules.synth import open_read

BY_NAME = rule_toml("evt.type = openat", extra='suppress_by = ["fd.name"]')


def test_long_key_fields_become_a_digest(tmp_path: Path) -> None:
    path = write(tmp_path, "r.toml", BY_NAME)
    rule = engine_for([path]).ruleset.rules[0]
    long_a, long_b = "/tmp/" + "a" * 5000, "/tmp/" + "a" * 4999 + "b"
    key_a = suppression_key(rule, open_read(long_a))
    assert len(key_a) < 200 + KEY_VALUES_MAX
    assert key_a == suppression_key(rule, open_read(long_a))
    assert key_a != suppression_key(rule, open_read(long_b))
    assert suppression_key(rule, open_read("/etc/shadow")).endswith("/etc/shadow")


def test_repeats_of_a_long_path_are_still_merged(tmp_path: Path) -> None:
    path = write(tmp_path, "r.toml", BY_NAME)
    engine = engine_for([path], window=60)
    long = "/tmp/" + "\udcff" * 6000
    assert len(engine.match(open_read(long))) == 1
    assert engine.match(open_read(long)) == []
    assert [f.count for f in engine.drain_updates()] == [2]


def test_threshold_values_are_bounded() -> None:
    assert bounded("short") == "short" and bounded(42) == 42
    long = "x" * (VALUE_MAX + 1)
    assert isinstance(bounded(long), bytes) and len(bounded(long)) == 16
    assert bounded(long) == bounded("x" * (VALUE_MAX + 1)) != bounded("y" * (VALUE_MAX + 1))


def test_deep_nesting_is_a_rule_error_not_a_crash(tmp_path: Path) -> None:
    for condition in ("not " * 3000 + "evt.type = openat",
                      "(" * 150 + "evt.type = openat" + ")" * 150):
        path = write(tmp_path, "deep.toml", rule_toml(condition))
        with pytest.raises(RuleSetError, match="nested more than 100"):
            load_ruleset([path])
    path = write(tmp_path, "ok.toml", rule_toml("(" * 99 + "evt.type = openat" + ")" * 99))
    assert load_ruleset([path]).rules


def test_an_ancestor_far_past_the_root_is_found_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "r.toml", rule_toml("proc.aname[99999999999] = sh"))
    assert engine_for([path]).match(open_read("/etc/shadow")) == []
