"""Socket fields as Falco defines them: client and server, local and remote ends of a connection.

On a connect or sendto the process is the client and the peer the server; on an accept,
recvfrom or recvmsg the process is the server and the peer the client; bind and listen name the
server's (local) address. cauditd's probes see the peer's address of a call, not the local one
of a connect (Falco's tuple has both): fields of an end the event did not carry are <NA>. On
flows (cauditd's network source) the flow's source is the client and its destination the server.
fd.dip and fd.dport are cauditd's own: the destination (the peer of connect/sendto, the client
of accept/recvfrom, the flow's destination).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from cauditd.events import ContainerInfo, Event, FdEvent, NetSyscallEvent, NetworkEvent
from cauditd.rules.fields import SOCK, FieldType, _field

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
CLIENT_CALLS = frozenset(("connect", "sendto", "sendmsg", "sendmmsg"))
SERVER_CALLS = frozenset(("accept", "accept4", "recvfrom", "recvmsg"))
EINPROGRESS = -115
IP, INT, B, S = FieldType.IPADDR, FieldType.INT, FieldType.BOOL, FieldType.STRING


class Ends(NamedTuple):
    """The two ends of a socket event ("" and -1 where unknown) and which one is local (a
    tuple: built for every socket field read, it must be cheap)."""

    cip: str
    cport: int
    sip: str
    sport: int
    local_is_server: bool

    @property
    def local(self) -> tuple[str, int]:
        return (self.sip, self.sport) if self.local_is_server else (self.cip, self.cport)

    @property
    def remote(self) -> tuple[str, int]:
        return (self.cip, self.cport) if self.local_is_server else (self.sip, self.sport)


def ends(ev: Event) -> Ends | None:
    if isinstance(ev, NetworkEvent):
        return Ends(ev.sip, ev.sport, ev.dip, ev.dport, ev.direction == "ingress")
    if isinstance(ev, FdEvent):  # a dup placed a socket: its peer, as the kernel's fd table says
        if ev.kind not in ("ipv4", "ipv6", "unix"):
            return None
        port = ev.port if ev.addr else -1
        if ev.accepted:  # the server's end: the peer is the client
            return Ends(ev.addr, port, "", -1, True)
        return Ends("", -1, ev.addr, port, False)
    if not isinstance(ev, NetSyscallEvent) or ev.family not in (AF_INET, AF_INET6):
        return None
    if ev.type in CLIENT_CALLS:
        return Ends("", -1, ev.addr, ev.port, False)
    if ev.type in ("accept", "accept4"):
        return Ends(ev.peer_addr, ev.peer_port if ev.peer_addr else -1, ev.addr,
                    ev.port if ev.addr else -1, True)
    if ev.type in SERVER_CALLS:
        return Ends(ev.addr, ev.port if ev.addr else -1, "", -1, True)
    return Ends("", -1, ev.addr, ev.port if ev.addr else -1, True)  # bind, listen


def _ip(pick: Callable[[Ends], str]) -> Callable[[Event], Any]:
    def extract(ev: Event) -> Any:
        found = ends(ev)
        return (pick(found) or None) if found is not None else None

    return extract


def _port(pick: Callable[[Ends], int]) -> Callable[[Event], Any]:
    def extract(ev: Event) -> Any:
        found = ends(ev)
        port = pick(found) if found is not None else -1
        return port if port >= 0 else None

    return extract


def _register_ends() -> None:
    ips = {"cip": lambda e: e.cip, "sip": lambda e: e.sip,
           "lip": lambda e: e.local[0], "rip": lambda e: e.remote[0]}
    ports = {"cport": lambda e: e.cport, "sport": lambda e: e.sport,
             "lport": lambda e: e.local[1], "rport": lambda e: e.remote[1]}
    words = {"c": "client", "s": "server", "l": "local", "r": "remote"}
    for name, pick_ip in ips.items():
        word = words[name[0]]
        _field(f"fd.{name}", IP, SOCK, f"The {word}'s IP address (compare with an address or a "
               "CIDR).")(_ip(pick_ip))
        _field(f"fd.{name[0]}net", IP, SOCK, f"The {word}'s IP network: "
               f'`fd.{name[0]}net = "10.0.0.0/8"`.')(_ip(pick_ip))
    for name, pick_port in ports.items():
        word = words[name[0]]
        _field(f"fd.{name}", INT, SOCK, f"The {word}'s port.",
               volatile=name in ("cport", "lport"))(_port(pick_port))


_register_ends()


@_field("fd.dip", IP, SOCK, "Destination IP: the peer of connect/sendto, the client of "
        "accept/recvfrom, a flow's destination.", falco=False)
def _fd_dip(ev: Event) -> Any:
    found = ends(ev)
    if found is None:
        return None
    if isinstance(ev, NetSyscallEvent) and ev.type in SERVER_CALLS:
        return found.cip or None
    return found.sip or None


@_field("fd.dport", INT, SOCK, "Destination port (see fd.dip).", falco=False)
def _fd_dport(ev: Event) -> Any:
    found = ends(ev)
    if found is None:
        return None
    port = found.cport if isinstance(ev, NetSyscallEvent) and ev.type in SERVER_CALLS \
        else found.sport
    return port if port >= 0 else None


@_field("fd.net", FieldType.IPLIST, SOCK, 'Either IP of the connection (client or server), '
        'for CIDR tests: `fd.net = "10.0.0.0/8"`.')
def _fd_net(ev: Event) -> Any:
    found = ends(ev)
    return tuple(ip for ip in (found.cip, found.sip) if ip) or None if found else None


@_field("fd.ip", FieldType.IPLIST, SOCK, "Either IP of the connection (client or server).")
def _fd_ip(ev: Event) -> Any:
    return _fd_net(ev)


@_field("fd.port", FieldType.INTLIST, SOCK, "Either port of the connection (client or server).")
def _fd_port(ev: Event) -> Any:
    found = ends(ev)
    return tuple(p for p in (found.cport, found.sport) if p >= 0) or None if found else None


@_field("fd.l4proto", S, SOCK, 'Transport protocol: "tcp", "udp", "icmp", "icmpv6", "raw".')
def _fd_l4proto(ev: Event) -> Any:
    if isinstance(ev, NetworkEvent):
        return ev.l4proto or None
    if isinstance(ev, NetSyscallEvent) and ev.family in (AF_INET, AF_INET6):
        return {1: "tcp", 2: "udp", 3: "raw"}.get(ev.sock_type & 0xF)
    return None


@_field("fd.sockfamily", S, SOCK, 'Socket family: "ip" or "unix".')
def _fd_sockfamily(ev: Event) -> Any:
    if isinstance(ev, NetworkEvent):
        return "ip"
    if isinstance(ev, NetSyscallEvent):
        return {AF_INET: "ip", AF_INET6: "ip", AF_UNIX: "unix"}.get(ev.family)
    return None


@_field("fd.is_server", B, SOCK, "The process is the server end (accept, recvfrom, bind, "
        "listen; a flow's destination).")
def _fd_is_server(ev: Event) -> Any:
    found = ends(ev)
    return found.local_is_server if found is not None else None


@_field("fd.connected", B, (NetSyscallEvent,), "The socket is connected: a connect that "
        "succeeded or is in progress, an accepted socket; false for a sendto or recvfrom "
        "with an address (an unconnected socket).")
def _fd_connected(ev: Event) -> Any:
    if not isinstance(ev, NetSyscallEvent):
        return None
    if ev.type == "connect":
        return ev.ret >= 0 or ev.ret == EINPROGRESS
    return ev.type in ("accept", "accept4")


@_field("fd.name_changed", B, (NetSyscallEvent,), "The event gave the socket its peer: "
        "connect, accept, and sendto/recvfrom with an address.")
def _fd_name_changed(ev: Event) -> Any:
    if not isinstance(ev, NetSyscallEvent):
        return None
    return ev.type in CLIENT_CALLS or ev.type in SERVER_CALLS


# --- names of addresses, from the DNS answers the container received (network monitor) -----

DnsNames = Callable[[ContainerInfo, str], tuple[str, ...]]
_dns_names: list[DnsNames] = []


def use_dns_names(names: DnsNames) -> None:
    """Where fd.sip.name and friends look names up: the network monitor's per-container map
    of answered addresses to the names asked (set by the daemon; without it they are <NA>)."""
    _dns_names[:] = [names]


def _names(pick: Callable[[Ends], str]) -> Callable[[Event], Any]:
    def extract(ev: Event) -> Any:
        found = ends(ev)
        address = pick(found) if found is not None else ""
        if not address or not _dns_names:
            return None
        return _dns_names[0](ev.container, address) or None

    return extract


for _end, _pick in (("cip", lambda e: e.cip), ("sip", lambda e: e.sip),
                    ("lip", lambda e: e.local[0]), ("rip", lambda e: e.remote[0])):
    _field(f"fd.{_end}.name", FieldType.LIST, SOCK, f"DNS names of fd.{_end}: the names the "
           "container resolved to that address (from the DNS answers seen on its veth; any "
           "one may match).")(_names(_pick))
