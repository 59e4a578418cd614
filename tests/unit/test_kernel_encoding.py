"""The route messages we encode ourselves, decoded by pyroute2 field by field; acks parsed back."""

from __future__ import annotations

import socket
import struct

import pytest
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from f2b_bgp.backends.rtnl_route import (NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, ROUTE_TYPES,
                                         RT_SCOPE_NOWHERE, RT_SCOPE_UNIVERSE, Ack, RouteEncoder, RouteSpec, Verb,
                                         parse_acks)

DESTINATIONS = [(socket.AF_INET, "203.0.113.7", 32), (socket.AF_INET, "198.51.100.0", 24),
                (socket.AF_INET6, "2001:db8:203::66", 128), (socket.AF_INET6, "2001:db8::", 32)]
SPECS = [RouteSpec(254, 201, 0, ROUTE_TYPES["blackhole"]), RouteSpec(100, 5, 4242, ROUTE_TYPES["unreachable"]),
         RouteSpec(1000, 255, 0, ROUTE_TYPES["prohibit"]),
         RouteSpec(2**32 - 1, 201, 2**32 - 1, ROUTE_TYPES["blackhole"])]


def decoded(data: bytes) -> rtmsg:
    message = rtmsg(data)
    message.decode()
    return message


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"table{s.table}-metric{s.metric}-type{s.route_type}")
@pytest.mark.parametrize("family, address, length", DESTINATIONS)
@pytest.mark.parametrize("verb", list(Verb))
def test_every_field_as_pyroute2_reads_it(spec: RouteSpec, family: int, address: str, length: int, verb: Verb) -> None:
    data = RouteEncoder(spec).encode(verb, 0xDEADBEEF, family, socket.inet_pton(family, address), length)
    message = decoded(data)
    header = message["header"]
    assert header["length"] == len(data) and len(data) % 4 == 0
    assert header["type"] == verb.value
    expected_flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_REPLACE if verb is Verb.ADD else 0)
    assert header["flags"] == expected_flags
    assert (header["sequence_number"], header["pid"]) == (0xDEADBEEF, 0)
    assert (message["family"], message["dst_len"], message["src_len"], message["tos"]) == (family, length, 0, 0)
    assert message["proto"] == spec.protocol
    if verb is Verb.ADD:
        assert (message["type"], message["scope"]) == (spec.route_type, RT_SCOPE_UNIVERSE)
    else:  # a delete matches any type and scope of our protocol's route
        assert (message["type"], message["scope"]) == (0, RT_SCOPE_NOWHERE)
    assert message["flags"] == 0
    attrs = dict(message["attrs"])
    expected = {"RTA_DST": address}
    if spec.table < 256:
        assert message["table"] == spec.table
    else:
        assert message["table"] == 0
        expected["RTA_TABLE"] = spec.table
    if spec.metric:
        expected["RTA_PRIORITY"] = spec.metric
    assert attrs == expected
    assert len(message["attrs"]) == len(expected)  # no attribute twice


def test_messages_concatenate_into_one_send() -> None:
    encoder = RouteEncoder(SPECS[1])
    parts = [encoder.encode(Verb.ADD, seq, *dest) for seq, dest in
             enumerate([(socket.AF_INET, bytes([203, 0, 113, 9]), 32), (socket.AF_INET6, bytes(16), 0)])]
    data = b"".join(parts)
    second = decoded(data[len(parts[0]):])
    assert second["header"]["sequence_number"] == 1 and second.get_attr("RTA_DST") == "::"


def ack(seq: int, error: int, flags: int = 0, tail: bytes = b"", request: bytes = b"\0" * 16) -> bytes:
    body = struct.pack("=i", error) + request + tail
    return struct.pack("=IHHII", 16 + len(body), 2, flags, seq, 4321) + body


def test_acks_with_and_without_the_kernel_reason() -> None:
    text = b"Invalid prefix for given prefix length\0"
    attr = struct.pack("=HH", 4 + len(text), 1) + text + b"\0" * (-len(text) % 4)
    capped = ack(8, -22, flags=0x300, tail=attr)  # NLM_F_CAPPED | NLM_F_ACK_TLVS
    full_request = struct.pack("=IHHII", 24, 24, 0, 9, 0) + b"\1" * 8
    uncapped = ack(9, -3, flags=0x200, tail=struct.pack("=HH", 8, 1) + b"gone", request=full_request)
    noise = struct.pack("=IHHII", 20, 24, 0, 1, 0) + b"\0" * 4  # not an ack: skipped
    data = bytearray(ack(7, 0) + noise + capped + uncapped + b"\0" * 100)
    size = len(data) - 100
    assert list(parse_acks(data, size)) == [Ack(7, 0, ""), Ack(8, 22, "Invalid prefix for given prefix length"),
                                            Ack(9, 3, "gone")]


def test_a_truncated_ack_is_not_read_past_the_end() -> None:
    data = ack(7, 0) + ack(8, -22)
    assert list(parse_acks(data, len(data) - 4)) == [Ack(7, 0, "")]
