"""Run inside a namespace: one ICMP echo + one TCP connect, 1 s timeout each; prints JSON.

usage: python3 _probe_main.py HOST PORT [SOURCE]
(from /work/shared/notes/peers-lab.md section 1, plus an optional source address)
"""

import json
import os
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def icmp(host: str, source: str | None) -> bool:
    v6 = ":" in host
    family, proto, echo, reply = ((socket.AF_INET6, socket.IPPROTO_ICMPV6, 128, 129) if v6
                                  else (socket.AF_INET, socket.IPPROTO_ICMP, 8, 0))
    with socket.socket(family, socket.SOCK_RAW, proto) as s:
        if source:
            s.bind((source, 0))
        ident, data = os.getpid() & 0xFFFF, b"f2b-lab-probe"
        packet = struct.pack("!BBHHH", echo, 0, 0, ident, 1) + data
        if not v6:  # the kernel fills the ICMPv6 checksum
            packet = struct.pack("!BBHHH", echo, 0, checksum(packet), ident, 1) + data
        s.sendto(packet, (host, 0))
        end = time.monotonic() + 1
        while (left := end - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                r = s.recv(2048)
            except socket.timeout:
                return False
            if not v6:
                r = r[(r[0] & 0xF) * 4:]
            if r[0] == reply and struct.unpack("!H", r[4:6])[0] == ident:
                return True
    return False


def tcp(host: str, port: int, source: str | None) -> bool:
    try:
        socket.create_connection((host, port), timeout=1, source_address=(source, 0) if source else None).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    source = sys.argv[3] if len(sys.argv) > 3 else None
    print(json.dumps({"icmp": icmp(host, source), "tcp": tcp(host, port, source)}))
