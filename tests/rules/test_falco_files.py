"""Falco rule files (YAML) read directly: lists, macros, rules, exceptions, append, override,
enabled, requirements and sources, each rule's verdict checked against Falco's on synthetic
events; what cannot load is skipped with one line, the rest loads; import writes TOML that loads
to the same rules.

The fixtures in tests/rules/falco/ are written for these tests in Falco's format.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cauditd import cli
from cauditd.events import HOST, ContainerInfo, ContainerMount, Event, ProcessInfo
from cauditd.findings import Priority
from cauditd.rules import RuleEngine, RuleSetError, check, load_ruleset
from cauditd.rules.loader import compile_paths
from tests.rules.fakeproc import FakeProc, rootfs
from tests.rules.helpers import write
from tests.rules.synth import (
    BASH,
    CONTAINER,
    O_CREAT,
    O_TRUNC,
    O_WRONLY,
    connect,
    execve,
    file_event,
    open_read,
    open_write,
    syscall,
)

FIXTURES = Path(__file__).parent / "falco"
BASE, MORE, SKIPS = (FIXTURES / f"rules_{n}.yaml" for n in ("base", "more", "skips"))
LANGUAGE = FIXTURES / "rules_language.yaml"
SOCKET_MOUNTED = dataclasses.replace(CONTAINER, mounts=(
    ContainerMount("/var/run/docker.sock", "/run/docker.sock"),))
ALLOWED = ContainerInfo(id="ab" * 32, name="allowed", image="x:1")


def parent(exe: str) -> ProcessInfo:
    return ProcessInfo(pid=4100, ppid=4000, exe=exe, args=(exe.rsplit("/", 1)[-1],),
                       container_id=CONTAINER.id)


def fired(paths: list[Path], event: Event) -> list[str]:
    engine = RuleEngine(load_ruleset(paths), suppress_window_s=0)
    return [f.rule for f in engine.match(event)]


# (event, the rules Falco fires on it with rules_base.yaml then rules_more.yaml)
VERDICTS: list[tuple[str, Event, list[str]]] = [
    ("bash", execve("/bin/bash"), ["Fixture shell"]),
    ("appended-list-item", execve("/bin/ksh"), ["Fixture shell"]),
    ("list-in-list", execve("/bin/zsh"), ["Fixture shell"]),
    ("quoted-item", execve("/usr/bin/fish"), ["Fixture shell"]),
    ("not-a-shell", execve("/bin/ls"), []),
    ("on-the-host", execve("/bin/sh", container=HOST), []),
    ("appended-macro", execve("/bin/sh", container=ALLOWED), []),
    ("exception-row", execve("/bin/sh", "sh", "-c", "/opt/known x",
                             parent=parent("/usr/bin/python3")), []),
    ("exception-row-other-parent", execve("/bin/sh", "sh", "-c", "/opt/known x",
                                          parent=parent("/usr/bin/perl")), ["Fixture shell"]),
    ("appended-exception-values", execve("/bin/sh", "sh", "-c", "npm i",
                                         parent=parent("/usr/bin/node")), []),
    ("single-field-exception", execve("/bin/sh", parent=parent("/usr/sbin/cron")), []),
    ("exception-by-list-name", execve("/bin/sh", parent=parent("/usr/sbin/anacron")), []),
    ("number-list", connect("10.0.0.1", 4444), ["Fixture port"]),
    ("number-list-miss", connect("10.0.0.1", 8080), []),
    ("appended-condition", execve("/bin/nc", "nc", "-e", "/bin/sh", "h", "1"),
     ["Fixture appended"]),
    ("appended-condition-miss", execve("/bin/nc", "nc", "h", "1"), []),
    ("replaced", execve("/usr/bin/socat"), ["Fixture replaced"]),
    ("disabled-later", execve("/bin/true"), []),
    ("enabled-later", execve("/bin/false"), ["Fixture enabled later"]),
]


@pytest.mark.parametrize(("event", "expected"), [v[1:] for v in VERDICTS],
                         ids=[v[0] for v in VERDICTS])
def test_verdicts_match_falco(event: Event, expected: list[str]) -> None:
    assert fired([BASE, MORE], event) == expected


# (label, event, the rule of rules_language.yaml Falco fires on it, or None)
LANGUAGE_VERDICTS: list[tuple[str, Event, str | None]] = [
    ("bcontains", execve("/tmp/x", "x", "--exploit"), "Lang bcontains"),
    ("bcontains-miss", execve("/tmp/x", "x", "--explore"), None),
    ("bstartswith", execve("/tmp/xmrig"), "Lang bstartswith"),
    ("bstartswith-miss", execve("/tmp/mxrig"), None),
    ("iglob", execve("/tmp/a/payload.bin"), "Lang iglob"),
    ("iglob-miss", execve("/tmp/payload.bin"), None),
    ("transformers", execve("/usr/bin/curl", "curl", "-s", "http://x"), "Lang transformers"),
    ("transformers-miss", execve("/usr/bin/curl", "curl", "-s"), None),
    ("b64", execve("/bin/echo", "echo", "L2Jpbi9zaA=="), "Lang b64"),
    ("b64-miss", execve("/bin/echo", "echo", "aGVsbG8="), None),
    ("val", execve("/bin/bash", parent=BASH), "Lang val"),
    ("val-miss", execve("/bin/sh", parent=BASH), None),
    ("mount-key", execve("/bin/ls", container=SOCKET_MOUNTED), "Lang mount key"),
    ("mount-key-miss", execve("/bin/ls"), None),
    ("arg-position", open_write("/etc/x"), "Lang arg position"),
    ("arg-position-miss", open_write("/tmp/x"), None),
    ("socket-domain", syscall("socket", {"domain": 17, "type": 3}), "Lang socket domain"),
    ("socket-domain-miss", syscall("socket", {"domain": 2, "type": 1}), None),
    ("ptrace-request", syscall("ptrace", {"request": 0x4206, "pid": 1}), "Lang ptrace request"),
    ("ptrace-request-miss", syscall("ptrace", {"request": 16, "pid": 1}), None),
    ("open-flags", open_write("/x", flags=O_WRONLY | O_CREAT | O_TRUNC), "Lang open flags"),
    ("open-flags-miss", open_write("/x", flags=O_WRONLY | O_CREAT), None),
    ("unshare-flags", syscall("unshare", {"flags": 0x10000000}), "Lang clone flags"),
    ("setns-flags", syscall("setns", {"fd": 3, "nstype": 0x40000000}), "Lang clone flags"),
    ("clone-flags-miss", syscall("unshare", {"flags": 0x20000}), None),
    ("mount-flags", syscall("mount", {"flags": 0x1000, "target": "/mnt"}), "Lang mount flags"),
    ("mount-flags-miss", syscall("mount", {"flags": 1, "target": "/mnt"}), None),
    ("mode", file_event("fchmodat", "/tmp/x", mode=0o755), "Lang mode"),
    ("mode-miss", file_event("fchmodat", "/tmp/x", mode=0o644), None),
    ("rmdir", file_event("rmdir", "/tmp/d", ret=0), "Lang event types"),
    ("recvfrom", connect("10.0.0.1", 53, evt_type="recvfrom"), "Lang event types"),
    ("recvmsg", connect("10.0.0.1", 53, evt_type="recvmsg"), "Lang event types"),
    ("userfaultfd", syscall("userfaultfd", {"flags": 0}), "Lang event types"),
    ("comm", execve("/usr/bin/unattended-upgrade"), "Lang comm"),
    ("comm-miss", execve("/usr/bin/upgrade"), None),
    ("cwd", execve("/bin/ls", cwd="/srv"), "Lang cwd"),
    ("cwd-miss", execve("/bin/ls", cwd="/srv/x"), None),
    ("failed-open", open_read("/x", ret=-2), "Lang failed open"),
    ("failed-open-miss", open_read("/x", ret=3), None),
    ("server-port", connect("10.0.0.1", 22), "Lang server port"),
    ("server-port-miss", connect("10.0.0.1", 80), None),
]


@pytest.mark.parametrize(("event", "expected"), [v[1:] for v in LANGUAGE_VERDICTS],
                         ids=[v[0] for v in LANGUAGE_VERDICTS])
def test_language_verdicts_match_falco(event: Event, expected: str | None) -> None:
    assert fired([LANGUAGE], event) == ([expected] if expected else [])


def test_fields_read_from_proc_match_falco(fake_proc: FakeProc, tmp_path: Path) -> None:
    root = rootfs(tmp_path / "root", "app:x:1000:1000::/home/app:/bin/sh\n", "app:x:1000:\n")
    fake_proc.process(4200, vpid=7, env=("LD_PRELOAD=/tmp/x.so",), rootfs=root)
    app = file_event("openat", "/x", uid=1000)
    app.gid = 1000
    assert fired([LANGUAGE], app) == ["Lang user name"]
    assert fired([LANGUAGE], execve("/bin/ls")) == ["Lang env key"]
    fake_proc.process(4201, vpid=8, env=("PATH=/bin",), rootfs=root)
    assert fired([LANGUAGE], execve("/bin/ls", pid=4201)) == []


def test_language_fixture_loads_whole() -> None:
    result = compile_paths([LANGUAGE])
    assert result.errors == [] and result.notices == []


def test_rule_keys_as_falco_merges_them() -> None:
    rules = {r.name: r for r in load_ruleset([BASE, MORE]).rules}
    replaced = rules["Fixture replaced"]
    assert replaced.priority is Priority.CRITICAL
    assert replaced.output.text == "replaced: %proc.cmdline"
    assert rules["Fixture port"].priority is Priority.INFORMATIONAL
    assert rules["Fixture shell"].tags == ("fixture", "shell")
    assert replaced.tags == ("replaced",)
    assert rules["Fixture shell"].description.startswith("A shell started")
    assert not rules["Fixture disabled later"].enabled
    assert rules["Fixture appended"].condition.endswith('and proc.args contains "-e"')


def test_what_cannot_load_is_skipped_with_one_line_each() -> None:
    result = compile_paths([SKIPS])
    assert result.errors == []
    assert [r.name for r in result.rules] == ["Fixture loads"]
    lines = [str(n) for n in result.notices]
    path = str(SKIPS)
    expected = [
        f"{path}:2: requires Falco engine 99.0.0",
        f"{path}:3: requires plugin 'k8saudit' 0.7.0, which cauditd does not have",
        f"{path}:8: macro 'fixture_broken': skipped: unknown field 'proc.no_such_field'",
        f"{path}:15: rule 'Fixture unknown field': skipped: unknown field 'proc.unheard_of'",
        f"{path}:19: rule 'Fixture broken macro': skipped: uses macro 'fixture_uses_broken', "
        "which does not load: it uses macro 'fixture_broken'",
        f"{path}:25: rule 'Fixture other source': skipped: source 'k8s_audit' is not one "
        "cauditd has",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert len(lines) == len(expected)
    assert all("\n" not in line for line in lines)
    assert check([SKIPS]) == []


@pytest.mark.parametrize(("text", "message", "line"), [
    ("- rule: x\n  condition: [unclosed\n", "not valid YAML", 3),
    ("rule: x\n", "a Falco rules file is a list of items", 1),
    ("- list: a\n  items: &x [b]\n- list: c\n  items: *x\n", "aliases are not supported", 2),
    ("- nothing: here\n", "not a rule, macro, list or requirement", 1),
    ("- rule: x\n  condition: evt.type = execve\n  colour: red\n", "unknown key 'colour'", 1),
    ("- list: deep\n  items: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 64", 2),
    ("- list: deep\n  items:\n" + " " * 600 + "- x\n", "indented more than 512", 3),
    ("- rule: x\n  condition: 'a [[[' # [[[\n  output: \"[[[[\"\n", "rule needs 'priority'", 1),
    ("- macro: m\n  condition: a\n  override:\n    items: append\n",
     "override must be {condition: append}", 1),
])
def test_broken_files_are_errors(tmp_path: Path, text: str, message: str, line: int) -> None:
    path = write(tmp_path, "bad.yaml", text)
    errors = check([path])
    assert len(errors) == 1 and message in str(errors[0]), errors
    if line:
        assert str(errors[0]).startswith(f"{path}:{line}:"), str(errors[0])
    with pytest.raises(RuleSetError):
        load_ruleset([path])


def test_toml_and_falco_files_mix_in_one_model(tmp_path: Path) -> None:
    toml = write(tmp_path, "z.toml", '[lists]\nfixture_shells = { items = ["dash"], '
                 'override = "append" }\n')
    assert fired([BASE, toml], execve("/bin/dash")) == ["Fixture shell"]
    write(tmp_path, "a.yaml", BASE.read_text())
    assert fired([tmp_path], execve("/bin/dash")) == ["Fixture shell"]  # a.yaml, then z.toml


def test_import_writes_toml_that_loads_to_the_same_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "imported.toml"
    assert cli.main(["rules", "import", str(BASE), str(MORE), str(SKIPS), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "rule 'Fixture unknown field': skipped" in err
    assert "imported 7 rules, skipped 3" in err
    assert check([out]) == []
    for _label, event, expected in VERDICTS:
        assert fired([out], event) == expected
    assert "Fixture loads" in {r.name for r in load_ruleset([out]).rules}


def test_rules_check_reports_skips_and_strict_fails_on_them(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["rules", "check", str(SKIPS)]) == 0
    captured = capsys.readouterr()
    assert "1 rules load; skipped: 3 rules, 1 macros" in captured.out
    assert "skipped: unknown field 'proc.unheard_of'" in captured.err
    assert cli.main(["rules", "check", "--strict", str(SKIPS)]) == 1
