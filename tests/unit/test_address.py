"""normalise(): what it returns for good text, and how it refuses hostile text.

Case by case behaviour lives in tests/data/guard_cases.txt; these are the properties.
"""

from __future__ import annotations

import ipaddress
import random
import string

import pytest
from netaddr import IPNetwork

from f2b_bgp.address import MAX_LENGTH, InvalidAddress, normalise


def test_invalid_address_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^leading zeros are ambiguous: '010\.0\.0\.1'$"):
        normalise("010.0.0.1")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        ("2001:DB8::1", "2001:db8::1/128"),
        ("::ffff:203.0.113.0/120", "203.0.113.0/24"),  # /96+n maps to /n
        ("::ffff:0:0/96", "0.0.0.0/0"),
        ("::", "::/128"),
        ("0.0.0.0/0", "0.0.0.0/0"),  # valid input; the length guard refuses it
    ],
)
def test_returns_canonical_network_with_explicit_length(text: str, canonical: str) -> None:
    network = normalise(text)
    assert isinstance(network, IPNetwork)
    assert str(network) == canonical
    assert network.ip == network.network


def test_not_a_string() -> None:
    with pytest.raises(InvalidAddress, match="not a string: int"):
        normalise(3405803783)  # type: ignore[arg-type]


def test_longest_valid_form_fits_the_limit() -> None:
    text = "0000:0000:0000:0000:0000:ffff:255.255.255.255/128"
    assert len(text) <= MAX_LENGTH
    assert str(normalise(text)) == "255.255.255.255/32"


@pytest.mark.parametrize(
    "text",
    [
        "\x00" * 64,
        "1.2.3.4\r\nX-Injected: yes",
        "\u202e4.3.2.1",  # right-to-left override
        "\x1b]0;pwned\x07",
        "1" * 10_000,
        "é" * 64,
    ],
    ids=["nul", "crlf", "rlo", "osc", "huge", "latin"],
)
def test_reason_is_one_short_printable_ascii_line(text: str) -> None:
    with pytest.raises(InvalidAddress) as refused:
        normalise(text)
    message = str(refused.value)
    assert message.isascii() and message.isprintable()
    assert len(message) < 120


def _random_network(rng: random.Random) -> IPNetwork:
    """Any length; IPv6 values often near ::/96 and ::ffff:0:0/96, where the text forms differ."""
    version = rng.choice((4, 6))
    width = 32 if version == 4 else 128
    value = rng.getrandbits(width)
    if version == 6 and rng.random() < 0.5:
        value = rng.choice((0, 0xFFFF << 32)) | rng.getrandbits(rng.randint(0, 40))
    length = rng.randint(0, width)
    return IPNetwork((value >> (width - length) << (width - length), length), version)


def test_round_trip_of_random_networks() -> None:
    rng = random.Random(4291)
    accepted = 0
    for _ in range(5000):
        network = _random_network(rng)
        try:
            ours = normalise(str(network))
        except InvalidAddress as refused:
            assert "IPv4-compatible" in str(refused), network  # the only refusal for netaddr's own output
            continue
        accepted += 1
        mapped = network.version == 6 and ours.version == 4
        assert ours.first == (network.first & 0xFFFFFFFF if mapped else network.first), network
        assert str(normalise(str(ours))) == str(ours), network
    assert accepted > 4000


def _stdlib(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    network = ipaddress.ip_network(text, strict=True)
    if network.version == 6 and network.prefixlen >= 96 and network.network_address.ipv4_mapped:
        return ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
    return network


SEEDS = ["203.0.113.7", "203.0.113.0/24", "2001:db8::1", "::ffff:203.0.113.7", "10.0.0.1/32"]


@pytest.mark.parametrize("seed", SEEDS)
def test_whatever_we_accept_the_strict_stdlib_parser_reads_the_same(seed: str) -> None:
    """Insert every printable ASCII character at every position: what normalise()
    accepts, Python's strict ipaddress module must accept as the same network."""
    accepted = 0
    for position in range(len(seed) + 1):
        for char in string.printable:
            text = seed[:position] + char + seed[position:]
            try:
                ours = normalise(text)
            except InvalidAddress:
                continue
            accepted += 1
            assert str(ours) == str(_stdlib(text)), text
    assert accepted > 0
