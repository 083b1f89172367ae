"""DNS parsing: the fields rules read, TCP framing, and hostile bytes."""

from __future__ import annotations

import contextlib
import random

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR

from cauditd.network import dns


def response(qname: str = "example.org") -> bytes:
    answers = [
        DNSRR(rrname=qname, type="CNAME", rdata="www." + qname, ttl=60),
        DNSRR(rrname="www." + qname, type="A", rdata="10.213.0.9", ttl=30),
        DNSRR(rrname="www." + qname, type="AAAA", rdata="fd00::9", ttl=30),
    ]
    return bytes(DNS(id=7, qr=1, qd=[DNSQR(qname=qname, qtype="A")], an=answers))


def test_query_fields() -> None:
    msg = dns.parse(bytes(DNS(id=9, rd=1, qd=[DNSQR(qname="Web.Cauditd.TEST.", qtype="TXT")])))
    assert (msg.dns_id, msg.is_response, msg.qname, msg.qtype) == (9, False, "web.cauditd.test",
                                                                   "TXT")
    assert msg.answers == ()


def test_response_answers_and_ttls() -> None:
    msg = dns.parse(response())
    assert msg.is_response and msg.rcode == "NOERROR"
    assert msg.answers == ("www.example.org", "10.213.0.9", "fd00::9")
    assert msg.ttls == (60, 30, 30)


@pytest.mark.parametrize(("rcode", "text"), [(0, "NOERROR"), (2, "SERVFAIL"), (3, "NXDOMAIN"),
                                              (5, "REFUSED"), (15, "15")])
def test_rcodes(rcode: int, text: str) -> None:
    raw = bytes(DNS(id=1, qr=1, rcode=rcode, qd=[DNSQR(qname="x.test")]))
    assert dns.parse(raw).rcode == text


def test_tcp_length_prefix() -> None:
    raw = response()
    assert dns.parse(len(raw).to_bytes(2, "big") + raw, tcp=True).answers[1] == "10.213.0.9"


@pytest.mark.parametrize("raw", [
    b"", b"\x00" * 11, b"\x00" * 12,  # empty, short, no question
    bytes.fromhex("0001 0100 0002 0000 0000 0000 01 61 00 0001 0001 01 62 00 0001 0001"),
])
def test_malformed_is_refused(raw: bytes) -> None:
    with pytest.raises(dns.MalformedDns):
        dns.parse(raw)


def test_compression_loop_terminates() -> None:
    raw = bytes.fromhex("0001 8180 0001 0001 0000 0000 c00c 0001 0001")  # name points at itself
    with contextlib.suppress(dns.MalformedDns):
        dns.parse(raw)


def test_random_and_mutated_bytes_never_crash() -> None:
    rng = random.Random(5)
    good = response()
    outcomes = {"parsed": 0, "malformed": 0}
    for i in range(4000):
        if i % 2:
            raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 600)))
        else:  # flip bytes of a valid answer: pointers, counts and lengths go wrong
            mutated = bytearray(good)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
            raw = bytes(mutated[: rng.randint(0, len(mutated))])
        try:
            msg = dns.parse(raw, tcp=i % 7 == 0)
        except dns.MalformedDns:
            outcomes["malformed"] += 1
            continue
        outcomes["parsed"] += 1
        assert isinstance(msg.qname, str) and len(msg.answers) == len(msg.ttls)
    assert outcomes["parsed"] > 0 and outcomes["malformed"] > 0
