"""The one netlink message f2b-bgp encodes itself: add (replace) or delete one route; and the acks.

pyroute2 builds a request object per route and costs ~1 ms each (issue 14);
these few bytes, many per send, cost a microsecond. Everything else (dumps,
decoding) stays with pyroute2. The layout is `struct nlmsghdr`, `struct
rtmsg` and rtattrs, as in <linux/netlink.h> and <linux/rtnetlink.h>; the
unit tests decode these bytes with pyroute2.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

RTM_NEWROUTE, RTM_DELROUTE = 24, 25
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
NLM_F_CAPPED, NLM_F_ACK_TLVS = 0x100, 0x200  # in acks: request payload cut, extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1
RTA_DST, RTA_PRIORITY, RTA_TABLE = 1, 6, 15
RT_SCOPE_UNIVERSE, RT_SCOPE_NOWHERE = 0, 255
RTN_UNSPEC = 0
ROUTE_TYPES = {"blackhole": 6, "unreachable": 7, "prohibit": 8}  # RTN_*

_HEAD = struct.Struct("=IHHII8BIHH")  # nlmsghdr, rtmsg, the RTA_DST attribute header
_U32_ATTR = struct.Struct("=HHI")
_ACK = struct.Struct("=IHHIIi")  # nlmsghdr of the ack, then the error (0 or -errno)
_NLMSGHDR_LEN, _ATTR_HDR = 16, struct.Struct("=HH")


class Verb(IntEnum):
    ADD = RTM_NEWROUTE  # with CREATE|REPLACE: idempotent
    DELETE = RTM_DELROUTE  # ESRCH when absent


@dataclass(frozen=True)
class RouteSpec:
    """What every route of one backend shares."""

    table: int
    protocol: int
    metric: int  # 0: no RTA_PRIORITY, the kernel's default
    route_type: int  # RTN_*


class RouteEncoder:
    """Route messages for one RouteSpec; a message is built from primitives (family, address bytes, length)."""

    def __init__(self, spec: RouteSpec) -> None:
        self.spec = spec
        # rtm_table holds only 8 bits: larger tables go in RTA_TABLE (as iproute2 does)
        self.rtm_table = spec.table if spec.table < 256 else 0
        tail = _U32_ATTR.pack(8, RTA_TABLE, spec.table) if spec.table >= 256 else b""
        if spec.metric:
            tail += _U32_ATTR.pack(8, RTA_PRIORITY, spec.metric)
        self.tail = tail
        # a delete matches our protocol (and metric, table), never the route type: scope "nowhere" = any
        self.shape = {
            Verb.ADD: (NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, RT_SCOPE_UNIVERSE, spec.route_type),
            Verb.DELETE: (NLM_F_REQUEST | NLM_F_ACK, RT_SCOPE_NOWHERE, RTN_UNSPEC),
        }

    def encode(self, verb: Verb, seq: int, family: int, dst: bytes, dst_len: int) -> bytes:
        flags, scope, rtype = self.shape[verb]
        size = _HEAD.size + len(dst) + len(self.tail)  # dst is 4 or 16 bytes: aligned, no padding
        return _HEAD.pack(size, verb, flags, seq, 0,
                          family, dst_len, 0, 0, self.rtm_table, self.spec.protocol, scope, rtype, 0,
                          4 + len(dst), RTA_DST) + dst + self.tail


@dataclass(frozen=True)
class Ack:
    seq: int
    errno: int  # 0: done
    message: str  # the kernel's extended-ack text, when it gave one


def parse_acks(data: bytes | bytearray | memoryview, size: int) -> Iterator[Ack]:
    """The NLMSG_ERROR messages (acks) among the first `size` bytes; other message types are skipped."""
    offset = 0
    while offset + _ACK.size <= size:
        length, kind, flags, seq, _pid, error = _ACK.unpack_from(data, offset)
        if length < _NLMSGHDR_LEN or offset + length > size:
            return  # malformed: never read past what we were given
        if kind == NLMSG_ERROR:
            yield Ack(seq, -error, _ext_message(data, offset, length, flags) if error else "")
        offset += (length + 3) & ~3


def _ext_message(data: bytes | bytearray | memoryview, start: int, length: int, flags: int) -> str:
    """NLMSGERR_ATTR_MSG of an error ack, or ""."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    # the request follows the error: its nlmsghdr only when capped, else the whole message
    request = _NLMSGHDR_LEN if flags & NLM_F_CAPPED else struct.unpack_from("=I", data, start + _ACK.size)[0]
    offset, end = start + _ACK.size + ((request + 3) & ~3), start + length
    while offset + _ATTR_HDR.size <= end:
        attr_len, attr_type = _ATTR_HDR.unpack_from(data, offset)
        if attr_len < _ATTR_HDR.size or offset + attr_len > end:
            return ""
        if attr_type & 0x3FFF == NLMSGERR_ATTR_MSG:
            return bytes(data[offset + 4:offset + attr_len]).split(b"\0", 1)[0].decode("utf-8", "replace")
        offset += (attr_len + 3) & ~3
    return ""
