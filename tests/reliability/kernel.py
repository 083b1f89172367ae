"""What a running daemon left in the kernel, read from outside it: its BPF maps (found through
the map fds in /proc/<pid>/fdinfo, dumped with bpftool), tc filters by owner, live cgroups."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cauditd.containers.cgroups import find_cgroup2_root
from cauditd.network import tc


def daemon_maps(pid: int) -> dict[str, int]:
    """Map name -> map id of the BPF maps process `pid` holds open."""
    ids = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = info.read_text()
        except OSError:
            continue  # closed meanwhile
        for line in text.splitlines():
            if line.startswith("map_id:"):
                ids.add(int(line.split()[1]))
    shown = json.loads(_bpftool("map", "show"))
    return {m["name"]: m["id"] for m in shown if m["id"] in ids and "name" in m}


def map_keys(map_id: int) -> list[int]:
    """The keys of a hash map with integer keys (little-endian, as the kernel holds them)."""
    entries = json.loads(_bpftool("map", "dump", "id", str(map_id)))
    return [int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little") for e in entries]


def _bpftool(*args: str) -> str:
    done = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def live_cgroup_ids() -> set[int]:
    """Inodes (cgroup ids) of every cgroup2 directory now."""
    root = str(find_cgroup2_root())
    found = set()
    for dirpath, _dirs, _files in os.walk(root):
        try:
            found.add(os.stat(dirpath).st_ino)
        except FileNotFoundError:
            continue
    return found


def tc_filters(owner: int) -> dict[int, list[str]]:
    """ifindex -> names of the tc filters daemon `owner` has on it, on every host interface."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        links = [link["index"] for link in ipr.get_links()]
    found = {}
    for ifindex in links:
        try:
            names = [n for n in tc.ours(ifindex, every=True) if tc.owner_of(n) == owner]
        except NetlinkError:  # the interface went meanwhile
            continue
        if names:
            found[ifindex] = names
    return found
