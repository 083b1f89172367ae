"""Find a container's host-side veth interfaces from its network namespace.

Inside the container's netns each veth end's IFLA_LINK is its peer's ifindex in the host netns.
We enter the netns with setns(2) in a short-lived thread of our own (a network namespace is per
thread), so the rest of the daemon never leaves the host netns.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import threading
from dataclasses import dataclass, field

from pyroute2 import IPRoute

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(slots=True)
class ContainerNet:
    """A container's network as seen from inside: veth peers on the host and its addresses."""

    host_ifindexes: list[int] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)


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
    result: list[ContainerNet | BaseException] = []
    thread = threading.Thread(target=_read_in_netns, args=(pid, result), name=f"netns-{pid}")
    thread.start()
    thread.join(timeout=10)
    if not result:
        raise VethError(f"pid {pid}: reading its netns timed out")
    if isinstance(result[0], BaseException):
        raise VethError(f"pid {pid}: {result[0]}") from result[0]
    return result[0]


def _read_in_netns(pid: int, result: list[ContainerNet | BaseException]) -> None:
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError as exc:
        result.append(exc)
        return
    try:
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            _setns(target)
            try:
                result.append(_read_links())
            finally:
                _setns(own)
        finally:
            os.close(target)
    except BaseException as exc:  # handed to the caller's thread
        result.append(exc)
    finally:
        os.close(own)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _read_links() -> ContainerNet:
    net = ContainerNet()
    with IPRoute() as ipr:
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            peer = link.get_attr("IFLA_LINK")
            if kind == "veth" and peer:
                net.host_ifindexes.append(int(peer))
        for addr in ipr.get_addr():
            text = addr.get_attr("IFA_ADDRESS")
            if text and not ipaddress.ip_address(text).is_loopback:
                net.addresses.append(str(text))
    return net
