"""The field registry: values on synthetic events, <NA> fallbacks, docs and `cauditd fields`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from cauditd.events import Event, ExecEvent
from cauditd.rules.fields import FIELDS, format_fields, lookup, markdown_table
from tests.rules.synth import (
    BASH,
    CONTAINER,
    connect,
    dns,
    execve,
    file_event,
    flow,
    open_write,
    syscall,
)

EXEC = execve("/usr/bin/curl", "curl", "-s", "http://x", parent=BASH, cwd="/srv", tty=34817)
ORPHAN = ExecEvent(type="execve", ts_ns=1, pid=77, comm="sh", exe="", argv=())

CASES: list[tuple[str, Event, Any]] = [
    ("evt.type", EXEC, "execve"),
    ("evt.source", flow("1.1.1.1", 53), "network"),
    ("evt.dir", EXEC, "<"),
    ("evt.res", open_write("/x", ret=-13), "EACCES"),
    ("evt.rawres", open_write("/x", ret=-13), -13),
    ("evt.failed", open_write("/x", ret=-13), True),
    ("proc.name", EXEC, "curl"),
    ("proc.name", ORPHAN, "sh"),
    ("proc.exe", EXEC, "curl"),
    ("proc.exepath", EXEC, "/usr/bin/curl"),
    ("proc.cmdline", EXEC, "curl -s http://x"),
    ("proc.args", EXEC, "-s http://x"),
    ("proc.pid", EXEC, 4200),
    ("proc.ppid", EXEC, 4100),
    ("proc.pname", EXEC, "bash"),
    ("proc.pexe", EXEC, "bash"),
    ("proc.pexepath", EXEC, "/bin/bash"),
    ("proc.pcmdline", EXEC, "bash"),
    ("proc.aname[2]", EXEC, "nginx"),
    ("proc.aname", EXEC, ("bash", "nginx", "containerd-shim-runc-v2")),
    ("proc.apid[2]", EXEC, 4000),
    ("proc.pname", ORPHAN, None),
    ("proc.cwd", EXEC, "/srv"),
    ("proc.tty", EXEC, 34817),
    ("proc.is_container_init", EXEC, False),
    ("proc.is_container_init", execve("/usr/sbin/nginx", pid=4000), True),
    ("user.uid", file_event("openat", "/x", uid=1000), 1000),
    ("user.name", file_event("openat", "/x", uid=0), "root"),
    ("user.name", file_event("openat", "/x", uid=1000), "1000"),
    ("group.gid", EXEC, 0),
    ("fd.name", open_write("/etc/x/y.conf"), "/etc/x/y.conf"),
    ("fd.directory", open_write("/etc/x/y.conf"), "/etc/x"),
    ("fd.directory", open_write("/y"), "/"),
    ("fd.filename", open_write("/etc/x/y.conf"), "y.conf"),
    ("fd.typechar", open_write("/y"), "f"),
    ("fd.type", connect("::1", 80, family=10), "ipv6"),
    ("fd.num", open_write("/y", ret=7), 7),
    ("fd.sip", connect("10.0.0.1", 80, evt_type="bind"), "10.0.0.1"),
    ("fd.dip", connect("10.0.0.1", 80), "10.0.0.1"),
    ("fd.dport", connect("10.0.0.1", 80), 80),
    ("fd.sport", flow("1.1.1.1", 53), 40000),
    ("fd.dip", connect("10.0.0.9", 80, evt_type="accept", peer=("10.0.0.8", 5555)), "10.0.0.8"),
    ("fd.net", flow("1.1.1.1", 53), ("172.17.0.2", "1.1.1.1")),
    ("fd.l4proto", flow("1.1.1.1", 53, proto="udp"), "udp"),
    ("fd.name", flow("1.1.1.1", 53), "172.17.0.2:40000->1.1.1.1:53"),
    ("container.id", EXEC, CONTAINER.id[:12]),
    ("container.full_id", EXEC, CONTAINER.id),
    ("container.id", syscall("bpf").__class__(type="bpf", ts_ns=1), "host"),
    ("container.name", EXEC, "web"),
    ("container.image", EXEC, "registry.local/team/nginx:1.25"),
    ("container.image.repository", EXEC, "registry.local/team/nginx"),
    ("container.image.tag", EXEC, "1.25"),
    ("container.privileged", EXEC, False),
    ("k8s.pod.name", EXEC, "web-0"),
    ("k8s.ns.name", EXEC, "prod"),
    ("evt.arg.newpath", file_event("rename", "/tmp/a", target="/etc/b"), "/etc/b"),
    ("evt.arg.target", file_event("symlink", "/etc/shadow", target="/tmp/s"), "/etc/shadow"),
    ("evt.arg.linkpath", file_event("symlink", "/etc/shadow", target="/tmp/s"), "/tmp/s"),
    ("evt.arg.mode", file_event("chmod", "/x", mode=0o4755),
     "04755(S_ISUID|S_IRUSR|S_IWUSR|S_IXUSR|S_IRGRP|S_IXGRP|S_IROTH|S_IXOTH)"),
    ("evt.arg.flags", open_write("/x", flags=0o1101), "O_WRONLY|O_CREAT|O_TRUNC"),
    ("evt.rawarg.mode", file_event("chmod", "/x", mode=0o4755), 0o4755),
    ("evt.arg.request", syscall("ptrace", {"request": 16}), 16),
    ("net.direction", flow("1.1.1.1", 53), "egress"),
    ("net.bytes", flow("1.1.1.1", 53, nbytes=5), 5),
    ("net.packets", flow("1.1.1.1", 53), 10),
    ("net.peer_names", flow("1.1.1.1", 53, names=("one.one",)), ("one.one",)),
    ("net.port_first_seen", dataclasses.replace(flow("172.17.0.2", 7000, direction="ingress"),
                                                port_first_seen=True), True),
    ("dns.qname", dns("WWW.Example.COM."), "www.example.com"),
    ("dns.qname_suffixes", dns("a.b.c"), ("a.b.c", "b.c", "c")),
    ("dns.qname_len", dns("a.b.c"), 5),
    ("dns.qname_labels", dns("a.b.c"), 3),
    ("dns.qname_longest_label", dns("abc.de"), 3),
    ("dns.qname_entropy", dns("aaaa.com"), 0.0),
    ("dns.qtype", dns("a.com", qtype="txt"), "TXT"),
    ("dns.rcode", dns("a.com", evt_type="dns_response", rcode="NXDOMAIN"), "NXDOMAIN"),
    ("dns.answers", dns("a.com", answers=("1.2.3.4",)), ("1.2.3.4",)),
    ("evt.is_open_write", open_write("/x"), True),
    ("evt.is_open_read", open_write("/x", flags=0o2), True),
    ("proc.is_exe_upper_layer", execve("/tmp/x", is_exe_upper_layer=True), True),
    ("proc.is_exe_from_memfd", execve("/memfd:x", is_exe_from_memfd=True), True),
    ("dns.qname", EXEC, None),
    ("proc.name", dns("a.com"), None),
]


@pytest.mark.parametrize(("name", "event", "expected"), CASES)
def test_field_values(name: str, event: Event, expected: Any) -> None:
    resolved = lookup(name)
    assert resolved is not None
    field, arg = resolved
    assert field.extractor(arg)(event) == expected


def test_every_field_is_tested_and_described() -> None:
    tested = {lookup(name)[0].name for name, _, _ in CASES}  # type: ignore[index]
    untested = set(FIELDS) - tested - {"evt.time"}
    assert not untested
    assert all(f.description and f.events for f in FIELDS.values())


def test_docs_field_table_is_the_registry() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "rules.md").read_text()
    table = doc.split("<!-- fields:begin -->\n", 1)[1].split("\n<!-- fields:end -->", 1)[0]
    assert table == markdown_table(), "regenerate docs/rules.md's field table"
    assert all(f"`{name}" in table for name in FIELDS)


def test_format_fields_lists_every_field() -> None:
    text = format_fields()
    assert all(name in text for name in FIELDS)
    assert "proc.aname[N]" in text and "evt.arg.<name>" in text


@pytest.mark.parametrize("name", ["proc.nme", "proc.aname[x]", "evt.arg.", "proc.name[1]"])
def test_unknown_names(name: str) -> None:
    assert lookup(name) is None
