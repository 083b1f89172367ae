"""Protobuf's wire format by hand, for the few messages cauditd speaks without generated code
(containerd's gRPC API, the google.rpc.Status body of an OTLP error). Decoding is strict: a buffer
that ends inside a field raises ValueError, never IndexError or a short value.
"""

from __future__ import annotations

from typing import Any


def encode_varint(value: int) -> bytes:
    """An unsigned varint."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_string(field: int, value: str) -> bytes:
    """One length-delimited protobuf field."""
    data = value.encode()
    return encode_varint(field << 3 | 2) + encode_varint(len(data)) + data


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it; ValueError if `buf` ends inside it."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong protobuf varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def decode_message(buf: bytes) -> dict[int, list[Any]]:
    """Protobuf wire format to {field number: [values]}: ints for varints and fixed fields,
    bytes for length-delimited ones (strings, messages, map entries)."""
    fields: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        value: Any
        if wire_type == 0:
            value, pos = read_varint(buf, pos)
        elif wire_type == 2:
            length, pos = read_varint(buf, pos)
            value, pos = bytes(buf[pos : pos + length]), pos + length
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value, pos = int.from_bytes(buf[pos : pos + size], "little"), pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        if pos > len(buf):
            raise ValueError("truncated protobuf field")
        fields.setdefault(number, []).append(value)
    return fields
