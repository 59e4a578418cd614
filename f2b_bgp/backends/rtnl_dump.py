"""Which routes of ours the kernel holds: one RTM_GETROUTE dump, read for the destination alone.

The drift check runs every minute over every route of ours. pyroute2 decodes
each dumped route into a full object (~180 µs: 18 s for 100,000 routes, three
minutes at a million, every minute); this reads the two fields we compare,
destination and length, in a few µs. The kernel filters the dump by table and
protocol (NETLINK_GET_STRICT_CHK, Linux 4.20+), and every message is checked
again here. pyroute2 still does every other dump and decode; a live test
compares this reader's answer with pyroute2's for the same routes.
"""

from __future__ import annotations

import errno
import socket
import struct

from ..model import Prefix
from .rtnl_route import RTA_DST, RTA_TABLE

RTM_GETROUTE, RTM_NEWROUTE = 26, 24
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NETLINK_GET_STRICT_CHK = 12
SOL_NETLINK = 270
_REQUEST = struct.Struct("=IHHII8BIHHI")  # nlmsghdr, rtmsg, an RTA_TABLE attribute
_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=8BI")
_ATTR = struct.Struct("=HH")
_WIDTH = {socket.AF_INET: (4, 32), socket.AF_INET6: (6, 128)}


def open_socket() -> socket.socket:
    """A route socket of the calling thread's network namespace (the daemon's, or a test's)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
    except OSError:
        pass  # an older kernel dumps everything: _ours still filters
    sock.bind((0, 0))
    return sock


def dump(sock: socket.socket, table: int, protocol: int) -> set[Prefix]:
    """Every route of `protocol` in `table`, IPv4 and IPv6 (blocking: run it in a thread); closes sock."""
    found: set[Prefix] = set()
    with sock:
        for seq, family in enumerate(_WIDTH, start=1):
            sock.send(_REQUEST.pack(_REQUEST.size, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0,
                                    family, 0, 0, 0, table if table < 256 else 0, protocol, 0, 0, 0,
                                    8, RTA_TABLE, table))
            _read(sock, seq, family, table, protocol, found)
    return found


def _read(sock: socket.socket, seq: int, family: int, table: int, protocol: int, found: set[Prefix]) -> None:
    while True:
        data = sock.recv(1 << 20)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _flags, got_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                raise OSError(errno.EPROTO, "netlink: truncated message in a route dump")
            body = offset + _NLMSGHDR.size
            if got_seq == seq:
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, body)[0]
                    raise OSError(code, f"netlink route dump: {errno.errorcode.get(code, code)}")
                if kind == RTM_NEWROUTE:
                    prefix = _ours(data, body, offset + length, family, table, protocol)
                    if prefix is not None:
                        found.add(prefix)
            offset += (length + 3) & ~3


def _ours(data: bytes, start: int, end: int, family: int, table: int, protocol: int) -> Prefix | None:
    rtm_family, dst_len, _, _, rtm_table, rtm_protocol, _, _, _ = _RTMSG.unpack_from(data, start)
    if rtm_family != family or rtm_protocol != protocol:
        return None
    version, width = _WIDTH[family]
    dst, offset = b"\0" * (width // 8), start + _RTMSG.size
    while offset + _ATTR.size <= end:
        size, kind = _ATTR.unpack_from(data, offset)
        if size < _ATTR.size:
            break
        value = data[offset + _ATTR.size: offset + size]
        if kind == RTA_DST:
            dst = value
        elif kind == RTA_TABLE:
            rtm_table = struct.unpack("=I", value)[0]
        offset += (size + 3) & ~3
    if rtm_table != table or len(dst) != width // 8:
        return None
    return Prefix(version, int.from_bytes(dst, "big"), dst_len)
