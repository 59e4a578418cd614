"""Peering snippets: the shipped examples are the generator's output, the reviewed
golden files pin every template branch, and every snippet refuses what the guards protect."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from f2b_bgp.config import load_config, parse_config
from f2b_bgp.errors import ConfigError
from f2b_bgp.peering import FIREWALLS, TARGETS, render
from f2b_bgp.peering.regenerate import EXAMPLE_DIRS, reference_config, reference_files

REPO = Path(__file__).parents[2]
GOLDEN = REPO / "tests" / "golden" / "peering"
OURS = [t for t in TARGETS if t != "exabgp"]  # exabgp's renderer and its files have their own tests
# The variant config has two firewalls: render each firewall target for one of them.
VARIANT_PEER = {"frr": "edge-b", "bird": "edge-a", "openbgpd": "edge-a", "routeros": "edge-b", "frr-injector": None}
UPDATE = os.environ.get("F2B_BGP_UPDATE_GOLDEN") == "1"  # rewrite the golden files, then review the diff


def test_targets_are_the_documented_ones() -> None:
    assert set(TARGETS) == {"frr", "bird", "openbgpd", "routeros", "exabgp", "frr-injector"}
    assert set(EXAMPLE_DIRS) == set(TARGETS)


@pytest.mark.parametrize("target", OURS)
def test_shipped_examples_are_the_generator_output(target: str) -> None:
    for relative, text in reference_files(target).items():
        shipped = REPO / relative
        assert shipped.exists(), f"{relative} is not shipped; run `make examples`"
        assert shipped.read_text(encoding="utf-8") == text, f"{relative} drifted; run `make examples`"


@pytest.mark.parametrize("target", OURS)
def test_variant_config_matches_the_reviewed_golden_files(target: str) -> None:
    config = load_config(GOLDEN / "variant.toml")
    for name, text in render(target, config, VARIANT_PEER[target]).items():
        _assert_golden(GOLDEN / "variant" / target / name, text)


def test_routeros_reference_output_matches_the_reviewed_golden_file() -> None:
    """RouterOS runs nowhere here: its text changes only with a reviewed golden file."""
    for name, text in render("routeros", reference_config()).items():
        _assert_golden(GOLDEN / "reference" / "routeros" / name, text)


def _assert_golden(path: Path, text: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run with F2B_BGP_UPDATE_GOLDEN=1 and review it"
    assert path.read_text(encoding="utf-8") == text, f"{path} differs; if intended, regenerate and review it"


@pytest.mark.parametrize("target", OURS)
def test_every_guarded_prefix_is_refused_in_every_snippet(target: str) -> None:
    """The firewall repeats the daemon's guards: each protected, peer and next-hop prefix
    appears, unless it lies inside another one that does; so do the discard next-hops."""
    config = load_config(GOLDEN / "variant.toml")
    text = "".join(render(target, config, VARIANT_PEER[target]).values())
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("!", "#")))
    covered_by_another = {"192.0.2.128/25", "192.0.2.10/32", "192.0.2.255/32", "2001:db8:ffff::dead/128"}
    for entry in config.guards.protected:
        prefix = str(entry.prefix.cidr)
        assert (prefix in body) != (prefix in covered_by_another), f"{target}: {prefix} ({entry.kind})"


@pytest.mark.parametrize("target", OURS)
def test_header_names_the_config_key_of_each_value(target: str) -> None:
    files = render(target, reference_config())
    main = next(iter(files.values()))
    keys = ["bgp.local_as", "guards.protected (our network)", "guards.min_length_ipv4", "bgp.communities"]
    keys += ["bgp.peers[0].address", "bgp.peers[0].asn", "bgp.peers[0].local_address"]
    keys += ["bgp.prefix_limit"] if target in FIREWALLS else ["bgp.router_id"]
    for key in keys:
        assert key in main, f"{target}: header does not name {key}"


@pytest.mark.parametrize("target", FIREWALLS)
def test_firewall_snippet_needs_a_peer_when_there_are_several(target: str) -> None:
    config = load_config(GOLDEN / "variant.toml")
    with pytest.raises(ConfigError, match="choose one of: edge-a, edge-b"):
        render(target, config)
    with pytest.raises(ConfigError, match="no peer named 'edge-c'"):
        render(target, config, "edge-c")


def test_peer_without_local_address_is_a_config_error() -> None:
    config = parse_config({"bgp": {"peers": [{"name": "fw", "address": "198.51.100.1", "asn": 65000}]}})
    with pytest.raises(ConfigError, match=r"bgp.peers\[0\].local_address: required"):
        render("bird", config)


def test_unknown_target_names_the_choices() -> None:
    with pytest.raises(ValueError, match="choose from frr, bird, openbgpd, routeros, exabgp, frr-injector"):
        render("junos", reference_config())
