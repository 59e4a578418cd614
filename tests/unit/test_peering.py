"""Peering snippets: the shipped examples are the generator's output, the reviewed
golden files pin every template branch, and every snippet refuses what the guards protect."""

from __future__ import annotations

import configparser
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from f2b_bgp.cli import exabgp_bridge
from f2b_bgp.config import DEFAULT_BRIDGE_SOCKET, discard_next_hops, load_config, parse_config
from f2b_bgp.errors import ConfigError
from f2b_bgp.peering import FIREWALLS, TARGETS, render, routeros
from f2b_bgp.peering.model import peering
from f2b_bgp.peering.regenerate import EXAMPLE_DIRS, reference_config, reference_files
from tests.lab.exabgp import with_bridge_program

REPO = Path(__file__).parents[2]
GOLDEN = REPO / "tests" / "golden" / "peering"
# ExaBGP's config filters nothing (the daemon's guards decide what it is told to announce):
# the targets that repeat the guards.
FILTERING = [t for t in TARGETS if t != "exabgp"]
# The variant config has two firewalls: render each firewall target for one of them.
VARIANT_PEER = {"frr": "edge-b", "bird": "edge-a", "openbgpd": "edge-a", "routeros": "edge-b", "frr-injector": None,
                "exabgp": None}
UPDATE = os.environ.get("F2B_BGP_UPDATE_GOLDEN") == "1"  # rewrite the golden files, then review the diff


def test_targets_are_the_documented_ones() -> None:
    assert set(TARGETS) == {"frr", "bird", "openbgpd", "routeros", "exabgp", "frr-injector"}
    assert set(EXAMPLE_DIRS) == set(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_shipped_examples_are_the_generator_output(target: str) -> None:
    for relative, text in reference_files(target).items():
        shipped = REPO / relative
        assert shipped.exists(), f"{relative} is not shipped; run `make examples`"
        assert shipped.read_text(encoding="utf-8") == text, f"{relative} drifted; run `make examples`"


@pytest.mark.parametrize("target", TARGETS)
def test_variant_config_matches_the_reviewed_golden_files(target: str) -> None:
    config = load_config(GOLDEN / "variant.toml")
    for name, text in render(target, config, VARIANT_PEER[target]).items():
        _assert_golden(GOLDEN / "variant" / target / name, text)


@pytest.mark.parametrize("target", TARGETS)
def test_aggregation_config_matches_the_reviewed_golden_files(target: str) -> None:
    """Aggregation on: every snippet accepts the widened and escalated lengths and names where they come from."""
    config = load_config(GOLDEN / "aggregation.toml")
    for name, text in render(target, config).items():
        _assert_golden(GOLDEN / "aggregation" / target / name, text)
    if target in FILTERING:
        header = "".join(render(target, config).values())
        assert "/64, nginx /56" in header and "/24, /48" in header and "/24, /48  " in header


# --routeros-version -> the golden directory of the syntax it selects
ROUTEROS_GOLDEN = {"7.18": "7.1-7.18", "7.19": "7.19", "7.20": "7.20+"}


@pytest.mark.parametrize("version", ROUTEROS_GOLDEN)
def test_routeros_reference_output_matches_the_reviewed_golden_file(version: str) -> None:
    """RouterOS runs nowhere here: its text changes only with a reviewed golden file, one per connection syntax."""
    for name, text in render("routeros", reference_config(), routeros_syntax=routeros.syntax_for(version)).items():
        _assert_golden(GOLDEN / "reference" / "routeros" / ROUTEROS_GOLDEN[version] / name, text)


@pytest.mark.parametrize("version, syntax", [
    ("7.1", routeros.Syntax.ADDRESS_FAMILIES), ("7.18", routeros.Syntax.ADDRESS_FAMILIES),
    ("7.18.2", routeros.Syntax.ADDRESS_FAMILIES), ("7.19", routeros.Syntax.AFI), ("7.19.4", routeros.Syntax.AFI),
    ("7.20", routeros.Syntax.INSTANCE), ("7.20.1", routeros.Syntax.INSTANCE), ("7.99", routeros.Syntax.INSTANCE),
])
def test_routeros_version_selects_the_connection_syntax(version: str, syntax: routeros.Syntax) -> None:
    assert routeros.syntax_for(version) is syntax


@pytest.mark.parametrize("version", ["7", "7.0", "6.49", "8.1", "7.019", "7.x", "7.20rc1", " 7.19", "7.19.", "v7.19",
                                     "7.1000", ""])
def test_routeros_version_is_parsed_strictly(version: str) -> None:
    with pytest.raises(ValueError, match="is not a RouterOS v7 release"):
        routeros.syntax_for(version)


@pytest.mark.parametrize("syntax", routeros.Syntax)
def test_routeros_script_can_be_imported_twice(syntax: routeros.Syntax) -> None:
    """It removes what carries its comment before adding anything, and everything it adds carries it."""
    lines = render("routeros", reference_config(), routeros_syntax=syntax)["f2b-bgp.rsc"].splitlines()
    adds = [i for i, line in enumerate(lines) if line.startswith("add ")]
    removes = [line for line in lines[:adds[0]] if " remove " in line]
    menus = ["/routing bgp connection", "/routing filter rule"]
    menus += ["/routing bgp instance"] if syntax is routeros.Syntax.INSTANCE else []
    assert sorted(line.split(" remove ")[0] for line in removes) == sorted(menus)
    assert all(line.endswith('[find where comment="f2b-bgp"]') for line in removes), removes
    assert [lines[i] for i in adds if ' comment="f2b-bgp" ' not in lines[i]] == []
    # one rule per refused prefix, 4 policy rules, the connection and (7.20+) the instance: nothing uncommented
    assert len(adds) == len(peering(reference_config()).refused) + 4 + len(menus) - 1


def test_routeros_filter_rules_use_ipv4_and_ipv6_afi() -> None:
    text = render("routeros", reference_config())["f2b-bgp.rsc"]
    assert "afi ipv4 &&" in text and "afi ipv6 &&" in text and "afi ip " not in text


def test_peering_routeros_version_errors_are_usage_errors(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "f2b_bgp", "--config", str(REPO / "f2b_bgp" / "config.example.toml"), "peering"]
    for args in (["routeros", "--routeros-version", "7.x"], ["frr", "--routeros-version", "7.19"]):
        result = subprocess.run([*base, *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines()[-1].startswith("Error: Invalid value for --routeros-version: "), result.stderr
    ok = subprocess.run([*base, "routeros", "--routeros-version", "7.19.2"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and " afi=ip,ipv6 " in ok.stdout and "instance=" not in ok.stdout
    # as docs/peering.md shows it
    written = subprocess.run([*base, "routeros", "--routeros-version", "7.18", "--output-dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=30)
    assert written.returncode == 0 and written.stdout == f"wrote {tmp_path / 'f2b-bgp.rsc'}\n"
    assert " address-families=ip,ipv6 " in (tmp_path / "f2b-bgp.rsc").read_text()


def _assert_golden(path: Path, text: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run with F2B_BGP_UPDATE_GOLDEN=1 and review it"
    assert path.read_text(encoding="utf-8") == text, f"{path} differs; if intended, regenerate and review it"


@pytest.mark.parametrize("target", FILTERING)
def test_every_guarded_prefix_is_refused_in_every_snippet(target: str) -> None:
    """The firewall repeats the daemon's guards: each protected, peer and next-hop prefix
    appears, unless it lies inside another one that does; so do the discard next-hops."""
    config = load_config(GOLDEN / "variant.toml")
    text = "".join(render(target, config, VARIANT_PEER[target]).values())
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("!", "#")))
    covered_by_another = {"192.0.2.128/25", "192.0.2.10/32"}
    # the discard next-hops are inside protected prefixes here, and FRR names them anyway (routed to Null0)
    for entry in set(config.guards.protected) - set(discard_next_hops(config.bgp)):
        prefix = str(entry.prefix.cidr)
        assert (prefix in body) != (prefix in covered_by_another), f"{target}: {prefix} ({entry.kind})"


@pytest.mark.parametrize("target", FILTERING)
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


# --- ExaBGP (injector) ----------------------------------------------------------------------------

EXABGP_SHIPPED = REPO / "exabgp"


def _exabgp_env(text: str) -> configparser.ConfigParser:
    env = configparser.ConfigParser()
    env.read_string(text)
    return env


def test_exabgp_env_keeps_what_the_bridge_relies_on() -> None:
    """Acks on (the daemon waits for them), the bridge restarted and never fatal, no line per route,
    `show adj-rib out` in chunks (a line per turn took longer than ack_timeout from ~30,000 routes)."""
    env = _exabgp_env((EXABGP_SHIPPED / "exabgp.env").read_text(encoding="utf-8"))
    settings = {f"{section}.{key}": value for section in env.sections() for key, value in env[section].items()}
    assert settings == {
        "exabgp.api.ack": "true", "exabgp.api.encoder": "json", "exabgp.api.respawn": "true",
        "exabgp.api.terminate": "false", "exabgp.api.cli": "true", "exabgp.api.chunk": "1000",
        "exabgp.daemon.user": "'f2b-bgp'",
        "exabgp.log.destination": "'syslog'", "exabgp.log.level": "INFO", "exabgp.log.routes": "false",
        "exabgp.tcp.bind": "'198.51.100.2'", "exabgp.tcp.port": "179",
    }


def test_exabgp_listens_on_each_session_address_once() -> None:
    peers = [{"name": f"fw{i}", "address": f"198.51.100.{i}", "asn": 65000, "local_address": "198.51.100.9"}
             for i in (1, 2)]
    peers.append({"name": "fw6", "address": "2001:db8:1::1", "asn": 65000, "local_address": "2001:db8:1::9"})
    config = parse_config({"bgp": {"router_id": "198.51.100.9", "peers": peers}})
    env = _exabgp_env(render("exabgp", config)["exabgp.env"])
    assert env["exabgp.tcp"]["bind"] == "'198.51.100.9 2001:db8:1::9'"


@pytest.mark.parametrize("config, run", [
    (REPO / "f2b_bgp" / "config.example.toml", "run /usr/local/bin/f2b-bgp exabgp-bridge;"),
    (GOLDEN / "variant.toml", "run /opt/f2b-bgp/bin/f2b-bgp exabgp-bridge --socket /run/f2b-bgp-variant/bridge.sock;"),
], ids=["default-socket", "moved-socket"])
def test_exabgp_run_line_names_the_socket_only_when_moved(config: Path, run: str) -> None:
    """The bridge runs by absolute path (backends.exabgp.bridge_program). It defaults to
    /run/f2b-bgp/exabgp.sock, and F2B_BGP_BRIDGE_SOCKET moves it unless --socket is given."""
    text = render("exabgp", load_config(config))["exabgp.conf"]
    assert [line.strip() for line in text.splitlines() if line.strip().startswith("run ")] == [run]


def test_exabgp_conf_holds_no_routes_and_keeps_adj_rib_out() -> None:
    """Routes come only from the daemon; adj-rib-out replays them after a session reset."""
    text = render("exabgp", load_config(GOLDEN / "variant.toml"))["exabgp.conf"]
    body = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in body if line.startswith(("static", "route ", "announce", "adj-rib-out"))]
    assert not [line for line in body if "no-export" in line.lower()]
    assert body.count("inherit f2b-firewall;") == 2


def test_exabgp_header_names_the_config_key_of_each_value() -> None:
    files = render("exabgp", reference_config())
    keys = ["bgp.local_as", "bgp.router_id", "backends.exabgp.bridge_socket", "backends.exabgp.bridge_program",
            "bgp.peers[0].address",
            "bgp.peers[0].asn", "bgp.peers[0].local_address", "bgp.peers[0].name"]
    for key in keys:
        assert key in files["exabgp.conf"], f"exabgp.conf: header does not name {key}"
    assert "bgp.peers[].local_address" in files["exabgp.env"]


def test_the_bridge_and_the_config_default_to_one_socket() -> None:
    """The run line leaves the socket out at the config's default: the bridge must default to it too."""
    (option,) = [p for p in exabgp_bridge.params if p.name == "bridge_socket"]
    assert option.default == str(DEFAULT_BRIDGE_SOCKET)


PEER = {"name": "fw", "address": "198.51.100.1", "asn": 65000, "local_address": "198.51.100.2"}


@pytest.mark.parametrize("bgp, backend, problem", [
    ({}, {}, r"bgp.router_id: an IPv4 address other than 0.0.0.0 is required"),
    ({"router_id": "198.51.100.2"}, {"bridge_socket": "/run/f2b bgp/x.sock"},
     r"backends.exabgp.bridge_socket: no spaces"),
])
def test_exabgp_config_errors(bgp: dict, backend: dict, problem: str) -> None:
    config = parse_config({"bgp": {**bgp, "peers": [PEER]}, "backends": {"exabgp": backend}})
    with pytest.raises(ConfigError, match=problem):
        render("exabgp", config)


def test_frr_injector_refuses_the_default_router_id() -> None:
    with pytest.raises(ConfigError, match=r"bgp.router_id: an IPv4 address other than 0.0.0.0 is required to render "
                                          r"the FRR injector config, not 0.0.0.0"):
        render("frr-injector", parse_config({"bgp": {"peers": [PEER]}}))


def _exabgp(folder: Path, tmp_path: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """`exabgp --env-file FOLDER/exabgp.env ARGS` as docs/peering.md runs it; only the user (f2b-bgp
    need not exist here) and the log destination are overridden, by environment variables."""
    env = {"PATH": "/usr/bin:/bin", "exabgp_log_destination": "stdout",
           "exabgp_daemon_user": user or pwd.getpwuid(os.getuid()).pw_name}
    return subprocess.run([sys.executable, "-m", "exabgp", "--env-file", str(folder / "exabgp.env"), *args],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)


@pytest.mark.parametrize("variant", [False, True], ids=["shipped", "variant"])
def test_exabgp_accepts_the_files(variant: bool, tmp_path: Path) -> None:
    """`exabgp validate` on the shipped files (and the variant's), with the env file. The bridge
    program, an absolute path that need not exist here, is replaced by a wrapper of this checkout."""
    pytest.importorskip("exabgp")
    config = load_config(GOLDEN / "variant.toml") if variant else reference_config()
    source = tmp_path / "rendered"
    source.mkdir()
    for name, text in render("exabgp", config).items():
        (source / name).write_text(text, encoding="utf-8")
    folder = source if variant else EXABGP_SHIPPED
    conf = with_bridge_program(folder / "exabgp.conf", tmp_path, str(config.exabgp.bridge_program))
    result = _exabgp(folder, tmp_path, "validate", "-n", str(conf))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("✓ neighbor") == (2 if variant else 1), output


def test_exabgp_refuses_an_unknown_user_with_a_traceback(tmp_path: Path) -> None:
    """What docs/peering.md tells the operator to expect when exabgp.daemon.user does not exist."""
    pytest.importorskip("exabgp")
    user = "f2b-bgp-no-such-user"
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    result = _exabgp(EXABGP_SHIPPED, tmp_path, "validate", "-n", str(EXABGP_SHIPPED / "exabgp.conf"), user=user)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and f"ValueError: invalid value for daemon.user : {user}" in result.stderr


def test_peering_exabgp_prints_both_files() -> None:
    result = subprocess.run([sys.executable, "-m", "f2b_bgp", "--config", str(GOLDEN / "variant.toml"),
                             "peering", "exabgp"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "### exabgp.conf\n" in result.stdout and "### exabgp.env\n" in result.stdout
