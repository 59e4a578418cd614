"""The reference config loads unchanged; every problem is reported with its dotted path."""

import subprocess
import sysconfig
import sys
from pathlib import Path

import pytest
from netaddr import IPNetwork

from f2b_bgp.config import BLACKHOLE, RouteType, config_warnings, load_config, parse_config
from f2b_bgp.errors import ConfigError, ExitCode
from f2b_bgp.guards import Accepted, HostFacts, check_text

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


# --- one problem each, and no follow-up errors ----------------------------------------------------

EXABGP = {"enabled": True}
EXABGP_ON = {"exabgp": EXABGP}
PEER = {"name": "fw", "address": "198.51.100.1", "asn": 65000, "local_address": "198.51.100.2"}


@pytest.mark.parametrize("raw, expected", [
    ({"guards": {"protected": [{"prefix": "bogus"}]}}, "guards.protected[0].prefix: invalid"),  # no "is required"
    ({"bgp": {"peers": ["198.51.100.1"]}}, "bgp.peers[0]: must be a table, not str"),  # no address/asn required
    ({"bgp": {"next_hop_ipv6": "bogus"}, "backends": EXABGP_ON}, "bgp.next_hop_ipv6: failed to detect"),  # given, not missing
    ({"guards": {"max_routes": "many"}, "bgp": {"prefix_limit": 5}}, "guards.max_routes: must be int, not str"),
    ({"bgp": {"prefix_limit": 0}}, "bgp.prefix_limit: must be between"),  # max_routes not compared with a default
    ({"bgp": []}, "bgp: must be a table, not list"),
    ({"backends": {"kernel": {"enabled": "no"}}}, "backends.kernel.enabled: must be bool, not str"),
], ids=["bad-prefix", "peer-not-a-table", "bad-next-hop", "bad-max-routes", "bad-prefix-limit", "bgp-not-a-table",
        "bad-enabled"])
def test_each_problem_once_without_follow_up_errors(raw: dict, expected: str) -> None:
    found = problems(raw)
    assert len(found) == 1 and found[0].startswith(expected), found


# --- keys that are valid alone but cannot work together: errors --------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ({"guards": {"max_routes": 20000}}, "guards.max_routes: 20000 is above bgp.prefix_limit (10000): past that the "
                                        "firewalls close the session"),
    ({"guards": {"max_routes": 51}, "bgp": {"prefix_limit": 50}}, "guards.max_routes: 51 is above bgp.prefix_limit (50)"),
    ({"backends": {"kernel": {"enabled": False}}}, "backends: no backend enabled"),
    ({"bgp": {"next_hop_ipv4": "2001:db8:1::2"}}, "bgp.next_hop_ipv4: '2001:db8:1::2' is not an IPv4 address"),
    ({"bgp": {"next_hop_ipv6": "198.51.100.2"}}, "bgp.next_hop_ipv6: '198.51.100.2' is not an IPv6 address"),
    ({"bgp": {"discard_ipv4": "100::1"}}, "bgp.discard_ipv4: '100::1' is not an IPv4 address"),
    ({"bgp": {"discard_ipv6": "192.0.2.1"}}, "bgp.discard_ipv6: '192.0.2.1' is not an IPv6 address"),
    ({"bgp": {"router_id": "2001:db8::2"}}, "bgp.router_id: '2001:db8::2' is not an IPv4 address"),
    ({"bgp": {"peers": [{**PEER, "local_address": "2001:db8:1::2"}]}},
     "bgp.peers[0].local_address: 2001:db8:1::2 is not IPv4 like address 198.51.100.1"),
    ({"backends": EXABGP_ON}, "bgp.next_hop_ipv6: required with backends.exabgp"),
], ids=["max-routes-default-limit", "max-routes-limit", "no-backend", "next-hop-ipv4-family", "next-hop-ipv6-family",
        "discard-ipv4-family", "discard-ipv6-family", "router-id-family", "local-address-family",
        "exabgp-without-ipv6-next-hop"])
def test_keys_that_cannot_work_together_are_errors(raw: dict, expected: str) -> None:
    found = problems(raw)
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize("raw", [
    {"guards": {"max_routes": 50}, "bgp": {"prefix_limit": 50}},
    {"bgp": {"next_hop_ipv6": "2001:db8:1::2"}, "backends": {"kernel": {"enabled": False}, **EXABGP_ON}},
], ids=["max-routes-at-the-limit", "exabgp-only"])
def test_keys_that_work_together(raw: dict) -> None:
    parse_config(raw)


# --- unusual but working: warnings ------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ({}, []),
    ({"bgp": {"peers": [PEER]}, "backends": {"kernel": {"table": 254}}}, []),
    ({"backends": {"kernel": {"table": 100}}},
     ["backends.kernel.table: 100 is not the main table (254): FRR's zebra imports only the main table"]),
    ({"bgp": {"next_hop_ipv6": "2001:db8:1::2"},
      "backends": {"kernel": {"enabled": False, "table": 100}, "exabgp": {**EXABGP, "bridge_program": sys.executable}}},
     []),
    ({"bgp": {"next_hop_ipv6": "2001:db8:1::2"}, "backends": {"exabgp": {**EXABGP, "bridge_program": "/nonexistent/f2b-bgp"}}},
     ["backends.exabgp.bridge_program: /nonexistent/f2b-bgp is not an executable file on this host"]),
    ({"bgp": {"peers": [PEER, {"name": "fw2", "address": "198.51.100.3", "asn": 65000}]}},
     ["bgp.peers[1].local_address: not set: `f2b-bgp peering` renders no snippet for this peer"]),
], ids=["defaults", "peer-and-main-table", "kernel-other-table", "kernel-off-other-table", "bridge-program-missing",
        "peer-without-local-address"])
def test_unusual_settings_are_warnings(raw: dict, expected: list[str]) -> None:
    found = config_warnings(parse_config(raw))
    assert len(found) == len(expected) and all(w.startswith(e) for w, e in zip(found, expected)), found


def test_reference_config_has_no_warnings() -> None:
    assert config_warnings(load_config(REFERENCE)) == []


def test_the_discard_next_hops_are_refused_by_the_guards() -> None:
    """The firewalls route them to Null0; a blackhole for one would resolve through itself."""
    config = parse_config({"bgp": {"discard_ipv4": "198.51.100.9", "discard_ipv6": "2001:db8:9::9"},
                           "guards": {"allow_special": ["198.51.100.0/24", "2001:db8::/32"]}})
    assert str(check_text("198.51.100.9", config.guards, HostFacts())) == "next-hop: 198.51.100.9/32 (discard_ipv4)"
    assert str(check_text("2001:db8:9::9", config.guards, HostFacts())) == "next-hop: 2001:db8:9::9/128 (discard_ipv6)"
    assert isinstance(check_text("198.51.100.8", config.guards, HostFacts()), Accepted)


# --- check-config: the command ------------------------------------------------------------------------

def check_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "f2b_bgp", "--config", str(path), "check-config"],
                          capture_output=True, text=True, timeout=30)


def test_check_config_prints_each_error_once_and_exits_3(tmp_path: Path) -> None:
    result = check_config(tmp_path, '[guards]\nprotected = [{ prefix = "bogus" }]\nmax_routes = 20000\n')
    path = tmp_path / "config.toml"
    assert result.returncode == ExitCode.CONFIG
    lines = result.stderr.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["guards.protected[0].prefix", "guards.max_routes"], lines
    assert all(line.startswith(f"{path}: ") for line in lines) and result.stdout == ""


def test_check_config_warnings_keep_exit_0(tmp_path: Path) -> None:
    result = check_config(tmp_path, "[backends.kernel]\ntable = 100\n")
    path = tmp_path / "config.toml"
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stderr.splitlines() == [f"warning: {path}: {config_warnings(load_config(path))[0]}"]
    assert result.stdout == f"{path}: ok\n"


# --- the bridge program on ExaBGP's run line ----------------------------------------------------------

def test_bridge_program_defaults_to_this_installations_script() -> None:
    """Python's scripts directory: /usr/local/bin on Debian's python3, bin/ of a virtualenv."""
    assert parse_config({}).exabgp.bridge_program == Path(sysconfig.get_path("scripts")) / "f2b-bgp"


@pytest.mark.parametrize("value, expected", [
    ("f2b-bgp", "backends.exabgp.bridge_program: must be an absolute path"),
    ("/opt/f2b bgp/bin/f2b-bgp", "backends.exabgp.bridge_program: no spaces"),
    ("/opt/f2b-bgp/bin/f2b-bgp;", "backends.exabgp.bridge_program: no spaces"),
    (7, "backends.exabgp.bridge_program: must be an absolute path"),
])
def test_bridge_program_must_be_an_absolute_path_fit_for_the_run_line(value: object, expected: str) -> None:
    found = problems({"backends": {"exabgp": {"bridge_program": value}}})
    assert len(found) == 1 and found[0].startswith(expected), found


def test_aggregation_is_off_by_default_and_read_with_its_jails() -> None:
    off = parse_config({}).aggregation
    assert off.ipv6_ban_length == 128 and off.jails == {} and off.escalation.enabled is False
    on = parse_config({"guards": {"min_length_ipv4": 24, "min_length_ipv6": 48},
                       "aggregation": {"ipv6_ban_length": 64, "jails": {"web1/sshd": {"ipv6_ban_length": 128}},
                                       "escalation": {"enabled": True, "threshold": 3, "window": 300}}}).aggregation
    assert (on.ban_length("sshd"), on.ban_length("web1/sshd")) == (64, 128)
    assert (on.escalation.threshold, on.escalation.window, on.escalation.ipv4_length) == (3, 300.0, 24)


@pytest.mark.parametrize("raw, expected", [
    ({"aggregation": {"ipv6_ban_length": 64}},
     "aggregation.ipv6_ban_length: /64 is shorter than guards.min_length_ipv6 (/128) allows"),
    ({"guards": {"min_length_ipv6": 64}, "aggregation": {"ipv6_ban_length": 64, "jails": {"web": {"ipv6_ban_length": 56}}}},
     "aggregation.jails.web.ipv6_ban_length: /56 is shorter than guards.min_length_ipv6 (/64) allows"),
    ({"aggregation": {"escalation": {"enabled": True}}},
     "aggregation.escalation.ipv4_length: /24 is shorter than guards.min_length_ipv4 (/32) allows"),
    ({"guards": {"min_length_ipv4": 24}, "aggregation": {"escalation": {"enabled": True}}},
     "aggregation.escalation.ipv6_length: /48 is shorter than guards.min_length_ipv6 (/128) allows"),
    ({"guards": {"min_length_ipv4": 24, "min_length_ipv6": 48},
      "aggregation": {"ipv6_ban_length": 48, "escalation": {"enabled": True}}},
     "aggregation.ipv6_ban_length: /48 is not longer than aggregation.escalation.ipv6_length (/48)"),
    ({"guards": {"min_length_ipv4": 24, "min_length_ipv6": 48},
      "aggregation": {"escalation": {"enabled": True, "bantime": 10**8}}},
     "aggregation.escalation.bantime: 100000000 is above daemon.max_bantime"),
    ({"aggregation": {"jails": {"bad jail": {"ipv6_ban_length": 64}}}}, "aggregation.jails.bad jail: a jail name must be"),
    ({"aggregation": {"escalation": {"threshold": 1}}}, "aggregation.escalation.threshold: must be between 2"),
    ({"aggregation": {"ipv6_ban_length": 8}}, "aggregation.ipv6_ban_length: must be between 16"),
    ({"aggregation": {"colour": 1}}, "aggregation.colour: unknown key"),
])
def test_inconsistent_aggregation_is_a_config_error(raw: dict, expected: str) -> None:
    found = problems(raw)
    assert any(p.startswith(expected) for p in found), found


def test_check_config_refuses_a_widening_the_guards_would_refuse(tmp_path: Path) -> None:
    """As docs/aggregation.md shows it."""
    result = check_config(tmp_path, "[aggregation]\nipv6_ban_length = 64\n")
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr == (f"{tmp_path / 'config.toml'}: aggregation.ipv6_ban_length: /64 is shorter than "
                             "guards.min_length_ipv6 (/128) allows: every widened ban would be refused; set "
                             "guards.min_length_ipv6 = 64 and re-render the firewall snippets (f2b-bgp peering), "
                             "or lengthen this\n")
    fixed = check_config(tmp_path, "[guards]\nmin_length_ipv6 = 64\n[aggregation]\nipv6_ban_length = 64\n")
    assert fixed.returncode == ExitCode.OK, fixed.stderr
