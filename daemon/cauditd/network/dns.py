"""Parse DNS packets copied by the tc probe (with scapy) into what cauditd keeps of them.

Anything scapy cannot make sense of is counted as malformed and skipped: DNS comes from the
network, so every byte of it may be hostile.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}
ADDRESS_TYPES = (1, 28)  # A, AAAA
NAME_TYPES = (2, 5, 12, 15)  # NS, CNAME, PTR, MX: the answer is a name
MAX_ANSWERS = 32


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """What cauditd keeps of a DNS message: the first question and the answer records."""

    dns_id: int
    is_response: bool
    qname: str
    qtype: str
    rcode: str
    answers: tuple[str, ...]
    ttls: tuple[int, ...]
    answer_types: tuple[str, ...]


class MalformedDns(ValueError):
    """A packet that is not a usable DNS message."""


def _dns_class() -> type:
    from scapy.config import conf
    from scapy.layers.dns import DNS

    conf.debug_dissector = False  # malformed layers become Raw instead of raising
    # hostile input is counted by the caller, not logged by scapy
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    return DNS


def _qtype_names() -> dict[int, str]:
    from scapy.layers.dns import dnstypes

    return dict(dnstypes)


_DNS: type | None = None
_QTYPES: dict[int, str] = {}


def parse(payload: bytes, *, tcp: bool = False) -> DnsMessage:
    """Decode one DNS message (for TCP, with its 2-byte length prefix); MalformedDns if unusable."""
    global _DNS, _QTYPES
    if _DNS is None:
        _DNS, _QTYPES = _dns_class(), _qtype_names()
    if tcp:
        if len(payload) < 2:
            raise MalformedDns("TCP DNS segment shorter than its length prefix")
        payload = payload[2:]
    if len(payload) < 12:
        raise MalformedDns(f"{len(payload)} bytes is shorter than a DNS header")
    try:
        msg = _DNS(payload)
        return _message(msg)
    except MalformedDns:
        raise
    except Exception as exc:  # scapy raises many kinds on hostile input
        raise MalformedDns(f"{type(exc).__name__}: {exc}") from None


def _message(msg: object) -> DnsMessage:
    m = msg  # scapy packet; attribute access is dynamic
    qd = getattr(m, "qd", None)
    if not qd or getattr(m, "qdcount", 0) != 1:
        raise MalformedDns("not exactly one question")
    question = qd[0]
    qname = _name(question.qname)
    qtype = _QTYPES.get(int(question.qtype), str(int(question.qtype)))
    answers: list[str] = []
    ttls: list[int] = []
    types: list[str] = []
    for rr in list(getattr(m, "an", None) or [])[:MAX_ANSWERS]:
        value = _rdata(rr)
        if value is None:
            continue
        answers.append(value)
        ttls.append(int(rr.ttl))
        types.append(_QTYPES.get(int(rr.type), str(int(rr.type))))
    return DnsMessage(
        dns_id=int(m.id), is_response=bool(m.qr), qname=qname, qtype=qtype,  # type: ignore[attr-defined]
        rcode=RCODES.get(int(m.rcode), str(int(m.rcode))),  # type: ignore[attr-defined]
        answers=tuple(answers), ttls=tuple(ttls), answer_types=tuple(types),
    )


def _name(raw: object) -> str:
    text = raw.decode("ascii", "backslashreplace") if isinstance(raw, bytes) else str(raw)
    return text.rstrip(".").lower()


def _rdata(rr: object) -> str | None:
    rtype = int(getattr(rr, "type", 0))
    rdata = getattr(rr, "rdata", None)
    if rdata is None:
        return None
    if rtype in ADDRESS_TYPES:
        return str(ipaddress.ip_address(rdata if isinstance(rdata, str) else bytes(rdata)))
    if rtype in NAME_TYPES:
        return _name(rdata)
    return None
