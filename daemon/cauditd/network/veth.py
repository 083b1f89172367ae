"""Find a container's host-side veth interfaces from its network namespace.

Inside the container's netns a veth end's IFLA_LINK is its peer's ifindex *in the peer's netns*,
which IFLA_LINK_NETNSID names (absent: the same netns). A container with NET_ADMIN can make veth
pairs of its own and give an end any free ifindex, so IFLA_LINK alone may name another host
interface (another container's veth): a peer counts only when its netns id is the host's, and
the host-side interface is checked back (a veth whose peer is that end, in that netns).
We enter the netns on a short-lived thread of our own (network.netns), so the rest of the
daemon never leaves the host netns.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cauditd.network import netns

NSID_NOT_ASSIGNED = -1


@dataclass(slots=True)
class ContainerNet:
    """A container's network as seen from inside: veth peers on the host and its addresses."""

    host_ifindexes: list[int] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    # veth ends whose IFLA_LINK names no host-side peer of theirs (made inside the netns, or
    # pointing elsewhere): not attached to, but worth counting (a container with NET_ADMIN)
    foreign_peers: int = 0


class VethError(RuntimeError):
    """The netns could not be entered or read (the process is gone, or no permission)."""


def same_netns_as_host(pid: int) -> bool:
    """True when `pid` shares our network namespace (a host-network container)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError as exc:
        raise VethError(f"pid {pid}: {exc.strerror}") from exc


def container_net(pid: int) -> ContainerNet:
    """The host-side veth ifindexes and IP addresses of the netns of process `pid`."""

    def read() -> ContainerNet:
        with netns.opened(f"/proc/{pid}/ns/net") as target:
            with netns.entered(target) as own:
                net, peers = _read_links(own)
            net.host_ifindexes = [peer for peer, end in peers if _host_peer_ok(peer, end, target)]
            net.foreign_peers += len(peers) - len(net.host_ifindexes)
            return net

    try:
        return netns.on_own_thread(read, f"netns-{pid}")
    except Exception as exc:
        raise VethError(f"pid {pid}: {exc}") from exc


def _netnsid(ipr: IPRoute, netns_fd: int) -> int | None:
    """The id the current netns gives the netns of `netns_fd` (None: it has none, so no link
    here has its peer there). Ask after dumping the links: the dump assigns the ids."""
    answer = ipr.get_netnsid(fd=netns_fd)
    nsid = answer.get("nsid") if answer else None
    return None if nsid is None or nsid in (NSID_NOT_ASSIGNED, 0xFFFFFFFF) else int(nsid)


def _read_links(host_fd: int) -> tuple[ContainerNet, list[tuple[int, int]]]:
    """In the container's netns: its addresses, and (host ifindex, container-side ifindex) of
    each veth whose peer is in the host's netns."""
    net = ContainerNet()
    with IPRoute() as ipr:
        veths = []
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            peer = link.get_attr("IFLA_LINK")
            if kind == "veth" and peer:
                veths.append((int(peer), int(link["index"]), link.get_attr("IFLA_LINK_NETNSID")))
        host = _netnsid(ipr, host_fd)
        peers = [(peer, end) for peer, end, nsid in veths if host is not None and nsid == host]
        net.foreign_peers = len(veths) - len(peers)
        for addr in ipr.get_addr():
            text = addr.get_attr("IFA_ADDRESS")
            if text and not ipaddress.ip_address(text).is_loopback:
                net.addresses.append(str(text))
    return net, peers


def _host_peer_ok(ifindex: int, container_end: int, container_fd: int) -> bool:
    """In the host's netns: `ifindex` is a veth whose peer is `container_end` in the container's
    netns (not an interface that merely has that number)."""
    try:
        with IPRoute() as ipr:
            links = ipr.get_links(ifindex)
            netns = _netnsid(ipr, container_fd)
    except NetlinkError:  # gone meanwhile
        return False
    if not links:
        return False
    link = links[0]
    info = link.get_attr("IFLA_LINKINFO")
    return (info is not None and info.get_attr("IFLA_INFO_KIND") == "veth"
            and link.get_attr("IFLA_LINK") == container_end and netns is not None
            and link.get_attr("IFLA_LINK_NETNSID") == netns)
