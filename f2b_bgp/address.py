"""Turn hostile text into one canonical prefix, or refuse it with a one-line reason.

Every part is checked here: IPv4 dotted quads (no '10.1', '010.0.0.1' or
'0x7f.1'), the length after the '/' (no '/024', '/+24', '/ 64', non-ASCII
digits, netmasks or hostmasks), no host bits ('1.2.3.4/24' is refused, not
read as '1.2.3.0/24'); IPv6 groups go through inet_pton, as strict as netaddr
1.3, which the other modules use and which was lenient after the '/'.
"""

from __future__ import annotations

import socket
import string

from netaddr import IPNetwork

from .model import Prefix

MAX_LENGTH = 64
SHELL_METACHARACTERS = frozenset("$`;|&<>()'\"\\")
_HOSTNAME_CHARS = frozenset(string.ascii_letters + string.digits + ".-_")
_IPV6_CHARS = frozenset(string.hexdigits + ":.")
_DOTTED_CHARS = frozenset(string.digits + ".")
_MAPPED = 0xFFFF  # ::ffff:0:0/96, the upper 96 bits
_UNSPECIFIED_AND_LOOPBACK = ((0, 128), (1, 128))  # ::/128 and ::1/128 (value, length), inside ::/96


class InvalidAddress(ValueError):
    """The text is not an address we accept; the message is one printable line."""


def shown(text: str, limit: int = 48) -> str:
    """ascii() of the text, cut to limit characters: safe in a log line or an error."""
    escaped = ascii(text)
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


def normalise(text: str) -> IPNetwork:
    """Canonical network for an address or prefix; IPv4-mapped IPv6 becomes IPv4."""
    return to_network(parse(text))


def parse(text: str) -> Prefix:
    """normalise() as the model's Prefix, with the standard library only (the per-ban path)."""
    if not isinstance(text, str):
        raise InvalidAddress(f"not a string: {type(text).__name__}")
    _check_characters(text)
    address, slash, length = text.partition("/")
    if "/" in length:
        raise InvalidAddress(f"more than one '/': {shown(text)}")
    if ":" in address:
        version, value = 6, _parse_ipv6(address, text)
    else:
        version, value = 4, _parse_ipv4(address, text)
    width = 32 if version == 4 else 128
    prefixlen = _parse_length(length, width, text) if slash else width
    if value & ((1 << (width - prefixlen)) - 1):
        network = Prefix(version, value >> (width - prefixlen) << (width - prefixlen), prefixlen)
        raise InvalidAddress(f"host bits set, the network would be {network}: {shown(text)}")
    if version == 6 and prefixlen >= 96:
        if value >> 32 == _MAPPED:
            return Prefix(4, value & 0xFFFFFFFF, prefixlen - 96)
        # Refused by value too: netaddr prints ::/96 values dotted ('::0.1.0.0'),
        # so this keeps normalise(str(n)) == n.
        if value >> 32 == 0 and ("." in address or (value, prefixlen) not in _UNSPECIFIED_AND_LOOPBACK):
            raise InvalidAddress(f"deprecated IPv4-compatible IPv6 address: {shown(text)}")
    return Prefix(version, value, prefixlen)


def _check_characters(text: str) -> None:
    if not text:
        raise InvalidAddress("empty address: ''")
    if len(text) > MAX_LENGTH:
        raise InvalidAddress(f"too long ({len(text)} characters, at most {MAX_LENGTH}): {shown(text)}")
    if text[0].isspace():
        raise InvalidAddress(f"leading whitespace: {shown(text)}")
    if text[-1].isspace():
        raise InvalidAddress(f"trailing whitespace: {shown(text)}")
    if not (text.isascii() and text.isprintable() and " " not in text and SHELL_METACHARACTERS.isdisjoint(text)):
        _refuse_character(text)  # the check above is the common case, in C; this names what is wrong
    if "%" in text:
        raise InvalidAddress(f"zone ids are not accepted: {shown(text)}")


def _refuse_character(text: str) -> None:
    """Raise for the first character that is whitespace, a control, non-ASCII or a shell metacharacter."""
    for char in text:
        if char.isspace():
            raise InvalidAddress(f"whitespace inside: {shown(text)}")
        if not char.isprintable():
            raise InvalidAddress(f"control character: {shown(text)}")
        if not char.isascii():
            raise InvalidAddress(f"non-ASCII character: {shown(text)}")
        if char in SHELL_METACHARACTERS:
            raise InvalidAddress(f"shell metacharacter {char!r}: {shown(text)}")


def _parse_ipv4(address: str, text: str) -> int:
    if not address:
        raise InvalidAddress(f"missing address: {shown(text)}")
    parts = address.split(".")
    if any(part[:2].lower() == "0x" for part in parts):
        raise InvalidAddress(f"hex form is ambiguous: {shown(text)}")
    if not all(part.isdigit() for part in parts if part):
        _refuse_non_address(address, text)
    return _dotted_quad(parts, text)


def _dotted_quad(parts: list[str], text: str) -> int:
    if not all(parts):
        raise InvalidAddress(f"empty part: {shown(text)}")
    if len(parts) < 4:
        raise InvalidAddress(f"short form is ambiguous, write all four parts: {shown(text)}")
    if len(parts) > 4:
        raise InvalidAddress(f"too many parts: {shown(text)}")
    if any(len(part) > 1 and part[0] == "0" for part in parts):
        raise InvalidAddress(f"leading zeros are ambiguous: {shown(text)}")
    if any(int(part) > 255 for part in parts):
        raise InvalidAddress(f"part out of range 0-255: {shown(text)}")
    value = 0
    for part in parts:
        value = value << 8 | int(part)
    return value


def _parse_ipv6(address: str, text: str) -> int:
    _refuse_unexpected(address, _IPV6_CHARS, text)
    tail = address.rpartition(":")[2]
    if "." in tail and set(tail) <= _DOTTED_CHARS:
        # inet_pton checks the embedded dotted quad too; this gives the clearer reason.
        _dotted_quad(tail.split("."), text)
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
    except OSError:
        raise InvalidAddress(f"not a valid IPv6 address: {shown(text)}") from None


def _refuse_unexpected(address: str, allowed: frozenset[str], text: str) -> None:
    for char in address:
        if char not in allowed:
            raise InvalidAddress(f"unexpected character {char!r}: {shown(text)}")


def _refuse_non_address(address: str, text: str) -> None:
    _refuse_unexpected(address, _HOSTNAME_CHARS, text)
    raise InvalidAddress(f"not an IP address (hostnames are not resolved): {shown(text)}")


def _parse_length(length: str, width: int, text: str) -> int:
    if not length:
        raise InvalidAddress(f"missing prefix length after '/': {shown(text)}")
    if length[0] in "+-":
        raise InvalidAddress(f"signed prefix length: {shown(text)}")
    if "." in length:
        raise InvalidAddress(f"netmask instead of a prefix length: {shown(text)}")
    if not length.isdigit():
        raise InvalidAddress(f"prefix length is not a number: {shown(text)}")
    if len(length) > 1 and length[0] == "0":
        raise InvalidAddress(f"leading zeros in prefix length: {shown(text)}")
    if int(length) > width:
        raise InvalidAddress(f"prefix length out of range 0-{width}: {shown(text)}")
    return int(length)


def to_prefix(network: IPNetwork) -> Prefix:
    """The model's canonical prefix of a checked network."""
    return Prefix(network.version, network.first, network.prefixlen)


def to_network(prefix: Prefix) -> IPNetwork:
    return IPNetwork((prefix.value, prefix.length), prefix.version)


def canonical_text(text: str) -> str:
    """The canonical form of text already refused for another reason than its syntax, for display."""
    try:
        return str(parse(text))
    except InvalidAddress:
        return shown(text)
