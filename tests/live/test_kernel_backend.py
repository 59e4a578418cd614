"""The daemon with the kernel backend, live in the injector namespace: exit codes, owners, expiry, restart, drift.
Then (1xx) the backend object itself in batches: what the kernel holds after each, and which prefixes failed.

The firewall side (FRR injector redistributing to a receiver) is in test_kernel_frr.py.
"""

from __future__ import annotations

import asyncio
import errno
import json
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from pyroute2 import AsyncIPRoute, netns

from f2b_bgp.backends.kernel import KernelBackend
from f2b_bgp.backends.rtnl_route import ROUTE_TYPES, RouteEncoder, RouteSpec, Verb
from f2b_bgp.backends.rtnl_socket import RouteSocket
from f2b_bgp.config import KernelConfig, RouteType
from f2b_bgp.errors import ExitCode
from f2b_bgp.model import Prefix
from tests.lab import faults
from tests.lab.f2bbgp import F2bBgp, lab_config
from tests.lab.netns import Topology
from tests.lab.peers import kernel_routes
from tests.lab.wait import wait_until

ATTACKER4, ATTACKER6 = "203.0.113.66", "2001:db8:203::66"
CONFIG = lab_config(daemon="reconcile_interval = 1", guards="max_routes = 5\nmax_rate = 100")


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    with Topology() as topo:
        yield topo


@pytest.fixture
def daemon(topology: Topology) -> Iterator[F2bBgp]:
    """A fresh daemon (empty state) on the injector; --discard: its start removes routes of ours left by the last one."""
    with F2bBgp(topology.ns("injector"), CONFIG, serve_args=("--discard",)) as d:
        yield d


def ours(topology: Topology) -> dict[str, str]:
    """Routes of our protocol number on the injector: prefix -> type."""
    return {p: r.type for p, r in kernel_routes(topology, "injector").items() if r.protocol == "201"}


def ip(topology: Topology, *argv: str) -> None:
    topology.run("injector", ["ip", *argv])


def test_010_ban_writes_a_blackhole_of_our_protocol_v4_and_v6(daemon: F2bBgp, topology: Topology) -> None:
    for address in (ATTACKER4, ATTACKER6):
        result = daemon.cli("ban", address, "--jail", "sshd", "--reason", "test")
        assert result.returncode == ExitCode.OK, result.stderr
        assert " active until " in result.stdout
    assert ours(topology) == {f"{ATTACKER4}/32": "blackhole", f"{ATTACKER6}/128": "blackhole"}


def test_020_refusals_exit_4_and_touch_nothing(daemon: F2bBgp, topology: Topology) -> None:
    assert daemon.cli("ban", ATTACKER4).returncode == ExitCode.OK
    for hostile, why in [("198.51.100.9", "protected: 198.51.100.0/24 (our network)"),
                         ("203.0.113.0/24", "length:"), ("10.1", "short form"), ("$(reboot)", "shell metacharacter"),
                         ("::ffff:198.51.100.9", "protected"), ("fc00::1", "special"), ("fe80::1", "connected"), ("198.51.100.2", "protected")]:
        result = daemon.cli("ban", hostile)
        assert result.returncode == ExitCode.REFUSED, (hostile, result.stderr)
        assert why in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert set(ours(topology)) == {f"{ATTACKER4}/32"}


def test_030_limit_exits_7_and_keeps_what_is_in_place(daemon: F2bBgp, topology: Topology) -> None:
    for i in range(5):
        assert daemon.cli("ban", f"203.0.113.{10 + i}").returncode == ExitCode.OK
    result = daemon.cli("ban", "203.0.113.99")
    assert result.returncode == ExitCode.LIMIT and "max-routes" in result.stderr
    assert len(ours(topology)) == 5


def test_040_owners_unban_and_withdraw_are_idempotent(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4, "--jail", "sshd")
    daemon.cli("ban", ATTACKER4, "--jail", "nginx")
    assert "still banned by nginx" in daemon.cli("unban", ATTACKER4, "--jail", "sshd").stdout
    assert daemon.cli("unban", ATTACKER4, "--jail", "sshd").returncode == ExitCode.OK
    assert ours(topology) == {f"{ATTACKER4}/32": "blackhole"}
    assert "removed nginx" in daemon.cli("withdraw", ATTACKER4).stdout
    assert daemon.cli("withdraw", ATTACKER4).returncode == ExitCode.OK
    assert ours(topology) == {}


def test_045_flush_one_jail_then_all(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4, "--jail", "sshd")
    daemon.cli("ban", ATTACKER6, "--jail", "sshd")
    daemon.cli("ban", ATTACKER6, "--jail", "nginx")
    daemon.cli("ban", "203.0.113.67", "--jail", "nginx")
    assert daemon.cli("flush", "--jail", "sshd").stdout.strip() == "removed 2 ban(s) of sshd"
    assert set(ours(topology)) == {f"{ATTACKER6}/128", "203.0.113.67/32"}  # still claimed by nginx
    assert daemon.cli("flush").stdout.strip() == "removed 2 ban(s)"
    assert ours(topology) == {}


def test_050_list_and_show(daemon: F2bBgp) -> None:
    daemon.cli("ban", ATTACKER6, "--jail", "sshd", "--reason", "brute force")
    listed = json.loads(daemon.cli("list", "--json").stdout)
    assert [(b["prefix"], b["state"], b["owners"][0]["jail"]) for b in listed] == [(f"{ATTACKER6}/128", "active", "sshd")]
    assert "PREFIX" in daemon.cli("list").stdout
    shown = daemon.cli("show", ATTACKER6).stdout
    assert "blackholed" in shown and "banned by sshd" in shown and "brute force" in shown
    refused = daemon.cli("show", "198.51.100.1").stdout
    assert "not blackholed" in refused and "refused by protected" in refused


def test_055_list_by_jail_and_the_route_expiry_are_true(daemon: F2bBgp) -> None:
    daemon.cli("ban", ATTACKER4, "--jail", "j3", "--bantime", "600")
    longer = daemon.cli("ban", ATTACKER4, "--jail", "j4", "--bantime", "60").stdout
    assert "active until" in longer and "(this claim by j4 until" in longer
    listed = json.loads(daemon.cli("list", "--jail", "j4", "--json").stdout)
    assert [o["jail"] for o in listed[0]["owners"]] == ["j4"]
    old = daemon.cli("ban", "203.0.113.70", "--started", "1000", "--bantime", "60")
    assert old.returncode == ExitCode.OK and "not banned: this ban ended at 1970-01-01" in old.stdout


def test_060_expiry_withdraws_without_an_unban(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4, "--bantime", "2")
    daemon.cli("ban", ATTACKER6, "--bantime", "600")
    wait_until(lambda: f"{ATTACKER4}/32" not in ours(topology), 10, "expiry of the 2 s ban")
    assert set(ours(topology)) == {f"{ATTACKER6}/128"}


def test_070_restart_and_kill_9_keep_state_and_reconcile(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4)
    daemon.cli("ban", ATTACKER6)
    daemon.kill(signal.SIGKILL)
    ip(topology, "route", "del", f"{ATTACKER4}/32", "proto", "201")  # lost while down
    ip(topology, "route", "add", "blackhole", "203.0.113.77/32", "proto", "201")  # a stale one of ours
    ip(topology, "route", "add", "blackhole", "203.0.113.78/32")  # the admin's own: not ours
    try:
        daemon.start()
        expected = {f"{ATTACKER4}/32", f"{ATTACKER6}/128"}
        wait_until(lambda: set(ours(topology)) == expected, 10, "reconciled kernel routes")
        assert kernel_routes(topology, "injector")["203.0.113.78/32"].type == "blackhole"
        assert json.loads(daemon.cli("status", "--json").stdout)["routes"] == {"active": 2, "pending": 0}
    finally:
        ip(topology, "route", "del", "203.0.113.78/32")


def test_080_drift_is_repaired_by_sync(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4)
    ip(topology, "route", "del", f"{ATTACKER4}/32", "proto", "201")
    result = daemon.cli("sync")
    assert result.returncode == ExitCode.OK and "missing 1" in result.stdout
    assert set(ours(topology)) == {f"{ATTACKER4}/32"}


def test_085_an_emptied_store_withdraws_nothing_until_told(topology: Topology) -> None:
    result = faults.empty_store(topology, routes=5)
    # 1. refused: exit 8, one line naming the file and the count, nothing withdrawn
    errors = [line for line in result.message if line.startswith("f2b-bgp: ")]
    assert result.exit_code == ExitCode.STORE and len(errors) == 1, result.message
    assert "state.db is new or empty but the backends hold 5 routes of ours" in errors[0]
    assert result.routes_after_refusal == 5
    # 2. --adopt keeps them as bans of 'adopted'; 3. --discard (on an emptied store again) removes them
    assert result.adopted == {"adopted"}
    tally = result.tally
    assert tally.acknowledged == 5 and (tally.lost, tally.stale, tally.duplicated) == (0, 0, 0), tally
    assert result.routes_after_discard == 0


def test_090_stopping_the_daemon_leaves_routes_and_the_cli_says_unavailable(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4)
    daemon.stop()
    assert set(ours(topology)) == {f"{ATTACKER4}/32"}
    result = daemon.cli("status")
    assert result.returncode == ExitCode.UNAVAILABLE and "daemon not reachable" in result.stderr


# --- the backend object in batches (not the daemon: protocol 202, so no daemon's reconcile touches them) ---

T = TypeVar("T")
V4 = [Prefix.parse(f"{net}.{i}/32") for net in ("192.0.2", "203.0.113") for i in range(256)]
V6 = [Prefix.parse(f"2001:db8:f2b::{i:x}/128") for i in range(2000)]
CONFIGS = {"main": KernelConfig(True, RouteType.BLACKHOLE, 254, 202, 0),
           "table1000-metric77": KernelConfig(True, RouteType.UNREACHABLE, 1000, 202, 77)}


def in_injector(topology: Topology, work: Callable[[], Awaitable[T]]) -> T:
    """Run work() with every socket it opens in the injector's namespace."""
    netns.pushns(topology.ns("injector"))
    try:
        return asyncio.run(work())
    finally:
        netns.popns()


def with_backend(topology: Topology, config: KernelConfig, work: Callable[[KernelBackend], Awaitable[T]]) -> T:
    async def run() -> T:
        backend = KernelBackend(config)
        await backend.start()
        try:
            return await work(backend)
        finally:
            await backend.stop()
    return in_injector(topology, run)


async def pyroute2_view(config: KernelConfig) -> set[Prefix]:
    """The same routes as pyroute2 dumps and decodes them."""
    found = set()
    async with AsyncIPRoute() as ipr:
        for family in (socket.AF_INET, socket.AF_INET6):
            async for route in await ipr.route("dump", family=family, proto=config.protocol, table=config.table):
                found.add(Prefix.parse(f"{route.get('dst')}/{route['dst_len']}"))
    return found


def kernel_view(topology: Topology, config: KernelConfig) -> dict[str, tuple[str, int]]:
    """`ip route show table T proto N`, both families: prefix -> (type, metric)."""
    routes = {}
    for family in ("-4", "-6"):
        for r in topology.ip_json("injector", [family, "route", "show", "table", str(config.table),
                                               "proto", str(config.protocol)]):
            routes[str(Prefix.parse(r["dst"]))] = (r.get("type", "unicast"), int(r.get("metric", 0)))
    return routes


Message = tuple[RouteEncoder, Verb, int, bytes, int]


def numbered(routes: RouteSocket, messages: list[Message]) -> list[tuple[int, bytes]]:
    """(seq, message) for each (encoder, verb, family, destination, length), as the backend sends them."""
    requests = []
    for encoder, verb, family, dst, length in messages:
        seq = routes.next_seq()
        requests.append((seq, encoder.encode(verb, seq, family, dst, length)))
    return requests


@pytest.mark.parametrize("name", CONFIGS)
def test_100_batches_add_and_delete_as_the_kernel_sees_them(topology: Topology, name: str) -> None:
    config = CONFIGS[name]
    everything = V4 + V6

    async def work(backend: KernelBackend) -> list[object]:
        seen: list[object] = [await backend.announce(everything), await backend.installed(),
                              kernel_view(topology, config)]
        assert seen[1] == await pyroute2_view(config)  # our dump reader and pyroute2's decoding agree
        seen += [await backend.withdraw(everything[::2]), await backend.installed(), kernel_view(topology, config)]
        seen += [await backend.withdraw(everything[1::2]), kernel_view(topology, config), backend.status().counters]
        return seen

    added, dumped, view, removed, dumped_half, view_half, removed_rest, view_end, sent = \
        with_backend(topology, config, work)
    assert added == {} and removed == {} and removed_rest == {}
    assert dumped == set(everything) and set(view) == {str(p) for p in everything}  # our dump and ip agree
    assert {kind for kind, _ in view.values()} == {config.route_type.value}
    default = {0, 1024}  # IPv4's and IPv6's
    assert {metric for _, metric in view.values()} == ({config.metric} if config.metric else default)
    assert dumped_half == set(everything[1::2]) and set(view_half) == {str(p) for p in everything[1::2]}
    assert view_end == {}
    assert 2 * len(everything) / 512 <= sent["sends"] < len(everything) / 100  # many messages per send


def test_110_one_send_mixes_announces_and_withdraws_and_a_withdraw_of_an_absent_route_succeeds(
        topology: Topology) -> None:
    """Calls queued while nothing is sent go out together; ESRCH on delete means already absent.
    (The kernel accepts every valid Prefix, so refusals are proven on the socket: test_120.)"""
    config = CONFIGS["main"]
    present, new, absent = V4[:100] + V6[:100], V4[100:200] + V6[100:200], [V4[300], V6[300]]

    async def work(backend: KernelBackend) -> tuple[list[dict], int, dict[str, tuple[str, int]]]:
        await backend.announce(present)
        sends = backend.status().counters["sends"]
        results = await asyncio.gather(backend.announce(new), backend.withdraw(present), backend.withdraw(absent))
        sent = backend.status().counters["sends"] - sends
        view = kernel_view(topology, config)
        await backend.withdraw(new)
        return list(results), sent, view

    results, sends, view = with_backend(topology, config, work)
    assert results == [{}, {}, {}]
    assert sends == 1, f"{sends} sends for 402 routes queued together"
    assert set(view) == {str(p) for p in new}
    assert kernel_view(topology, config) == {}


def test_120_one_send_mixes_adds_deletes_and_refusals_each_acked_by_sequence(topology: Topology) -> None:
    """Straight on the socket: an address family mismatch, an unknown route type and a delete of an absent
    route among good messages in one send; each gets its own ack."""
    encoder = RouteEncoder(RouteSpec(254, 202, 0, ROUTE_TYPES["blackhole"]))
    bad_type = RouteEncoder(RouteSpec(254, 202, 0, 200))
    v4, v6 = socket.inet_pton(socket.AF_INET, "203.0.113.44"), socket.inet_pton(socket.AF_INET6, "2001:db8:f2b::44")

    async def work() -> tuple[dict[int, tuple[int, str]], dict[str, tuple[str, int]]]:
        routes = RouteSocket()
        try:
            requests = numbered(routes, [
                (encoder, Verb.ADD, socket.AF_INET, v4, 32), (encoder, Verb.ADD, socket.AF_INET, v6, 128),
                (encoder, Verb.DELETE, socket.AF_INET, socket.inet_pton(socket.AF_INET, "192.0.2.99"), 32),
                (bad_type, Verb.ADD, socket.AF_INET6, v6, 128), (encoder, Verb.ADD, socket.AF_INET6, v6, 128)])
            acks = await routes.exchange(requests)
            view = kernel_view(topology, CONFIGS["main"])
            await routes.exchange(numbered(routes, [(encoder, Verb.DELETE, socket.AF_INET, v4, 32),
                                                    (encoder, Verb.DELETE, socket.AF_INET6, v6, 128)]))
            return {i: (acks[seq].errno, acks[seq].message) for i, (seq, _) in enumerate(requests)}, view
        finally:
            routes.close()

    answers, view = in_injector(topology, work)
    assert [code for code, _ in answers.values()] == [0, errno.EINVAL, errno.ESRCH, errno.EINVAL, 0]
    assert all(message for code, message in answers.values() if code == errno.EINVAL), answers  # the kernel said why
    assert view == {"203.0.113.44/32": ("blackhole", 0), "2001:db8:f2b::44/128": ("blackhole", 1024)}
    assert kernel_view(topology, CONFIGS["main"]) == {}


def test_130_acks_lost_to_a_small_receive_buffer_are_asked_again(topology: Topology) -> None:
    """ENOBUFS: the kernel did the work but dropped acks; the unanswered requests go again (idempotent)."""
    encoder = RouteEncoder(RouteSpec(254, 202, 0, ROUTE_TYPES["blackhole"]))

    async def work() -> tuple[list[object], dict[str, int]]:
        routes = RouteSocket(socket_buffer=32 << 10)
        try:
            results = []
            for verb in (Verb.ADD, Verb.DELETE):
                requests = numbered(routes, [(encoder, verb, socket.AF_INET6, p.packed, 128) for p in V6[:512]])
                acks = await routes.exchange(requests)
                results.append(len(kernel_view(topology, CONFIGS["main"])))
                results.append(sorted({acks[seq].errno for seq, _ in requests}))
            return results, routes.counts
        finally:
            routes.close()

    (held, add_codes, left, del_codes), counts = in_injector(topology, work)
    assert counts["resends"] > 0, f"the small buffer lost no ack: {counts}"
    assert (held, add_codes) == (512, [0])
    assert left == 0 and set(del_codes) <= {0, errno.ESRCH}  # a repeated delete finds the route gone


def test_140_a_ban_waits_at_most_a_batch_behind_a_big_replay(topology: Topology) -> None:
    config = CONFIGS["main"]
    replay, ban = V6[:1900], V4[0]

    async def work(backend: KernelBackend) -> tuple[bool, bool, dict, dict]:
        big = asyncio.create_task(backend.announce(replay))
        small = asyncio.create_task(backend.announce([ban]))
        await asyncio.wait({big, small}, return_when=asyncio.FIRST_COMPLETED)
        order = (small.done(), big.done())
        results = (await big, await small)
        await backend.withdraw(replay + [ban])
        return (*order, *results)

    small_first, big_first, big_failed, small_failed = with_backend(topology, config, work)
    assert (small_first, big_first) == (True, False), "the one-prefix call waited for the whole replay"
    assert big_failed == {} and small_failed == {}
    assert kernel_view(topology, config) == {}
