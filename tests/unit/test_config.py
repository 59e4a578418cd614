"""The reference config loads unchanged; every problem is reported with its dotted path."""

from pathlib import Path

import pytest
from netaddr import IPNetwork

from f2b_bgp.config import BLACKHOLE, RouteType, load_config, parse_config
from f2b_bgp.errors import ConfigError

REFERENCE = Path(__file__).parents[2] / "f2b_bgp" / "config.example.toml"


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    return err.value.problems


def test_reference_config_loads_unchanged() -> None:
    config = load_config(REFERENCE)
    assert config.kernel.route_type is RouteType.BLACKHOLE
    assert config.kernel.protocol == 201
    assert config.bgp.communities == (BLACKHOLE,)
    kinds = {(str(p.prefix), p.kind) for p in config.guards.protected}
    assert ("198.51.100.0/24", "protected") in kinds
    assert ("198.51.100.1/32", "peer") in kinds
    assert ("2001:db8:1::2/128", "next-hop") in kinds


def test_defaults_from_an_empty_file() -> None:
    config = parse_config({})
    assert config.daemon.socket == Path("/run/f2b-bgp/f2b-bgp.sock")
    assert config.guards.min_length_ipv4 == 32 and config.guards.min_length_ipv6 == 128
    assert config.exabgp.enabled is False and config.kernel.enabled is True


def test_every_problem_is_reported_with_its_dotted_path() -> None:
    found = problems({
        "daemon": {"socket_mode": 660, "max_bantime": 0, "colour": "red"},
        "guards": {"protected": ["198.51.100.1/24", {"prefix": "bogus"}, {"name": "x"}, {"prefix": "192.0.2.0/24", "name": "a\nb"}],
                   "max_rate": "fast"},
        "bgp": {"communities": ["65535:666", "70000:1"],
                "peers": [{"address": "198.51.100.1", "asm": 1}, {"name": "fw\"; drop", "address": "192.0.2.7", "asn": 1}]},
        "backends": {"kernel": {"protocol": 188, "route_type": "drop"}, "bird": {}},
        "extra": 1,
    })
    expected = [
        "daemon.socket_mode:", "daemon.max_bantime: must be between", "daemon.colour: unknown key",
        "guards.protected[0]: host bits set", "guards.protected[1].prefix:", "guards.protected[2].prefix: is required", "guards.protected[3].name: must be at most 64",
        "guards.max_rate: must be int", "bgp.communities[1]: '70000:1' is not a standard community",
        "bgp.peers[0].asm: unknown key", "bgp.peers[0].asn: is required", "bgp.peers[1].name: must be at most 64", "backends.kernel.protocol: 188 belongs to FRR",
        "backends.kernel.route_type:", "backends.bird: unknown key", "extra: unknown key",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in found), (start, found)


def test_booleans_are_not_numbers() -> None:
    assert problems({"guards": {"max_routes": True}}) == ["guards.max_routes: must be int, not bool"]


def test_peers_and_next_hops_become_protected_host_routes() -> None:
    config = parse_config({"bgp": {"next_hop_ipv4": "192.0.2.9", "peers": [{"name": "fw9", "address": "2001:db8::9", "asn": 65000}]}})
    protected = {(p.prefix, p.name, p.kind) for p in config.guards.protected}
    assert (IPNetwork("2001:db8::9/128"), "fw9", "peer") in protected
    assert (IPNetwork("192.0.2.9/32"), "next_hop_ipv4", "next-hop") in protected


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[daemon\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
