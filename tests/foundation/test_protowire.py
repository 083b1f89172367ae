"""The hand-spoken protobuf wire format: what it reads, and that a cut buffer is a ValueError."""

from __future__ import annotations

import pytest

from cauditd.protowire import decode_message, encode_string, encode_varint


def test_round_trip() -> None:
    buf = encode_string(1, "abc") + encode_varint(2 << 3) + encode_varint(300)
    assert decode_message(buf) == {1: [b"abc"], 2: [300]}


@pytest.mark.parametrize("buf", [
    b"\x0a\x05ab",  # a string field cut short
    b"\x08\x80",  # a varint cut inside
    b"\x08" + b"\xff" * 11,  # a varint longer than 64 bits
    b"\x0d\x01\x02",  # a fixed32 cut short
    b"\x0b",  # wire type 3 (groups): not spoken
])  # fmt: skip
def test_broken_buffers_are_value_errors(buf: bytes) -> None:
    with pytest.raises(ValueError):
        decode_message(buf)
