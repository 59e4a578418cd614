"""A real fail2ban-server drives a real f2b-bgp daemon (kernel backend in a namespace), through each shipped action.

Every test runs twice: with `banaction = bgp-blackhole` (the shell action) and with
`banaction = bgp-blackhole.py` (the Python action). fail2ban gets Debian's stock
jail.conf and our fail2ban/action.d, filter.d and jail.d byte for byte; the test adds
jail.local (log paths, polling backend, short ban times, its own extra jails) and
action.d/bgp-blackhole.local (the daemon's queue): fail2ban's own override files; the
Python action finds the socket and the queue in the server's environment. Addresses: 192.0.2.1 and 2001:db8::1 (documentation ranges, allowed by
the daemon's test config), more from 192.0.2.0/24 and 2001:db8::/32.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.lab.fail2ban import Fail2banServer, Namespace, append, fail2ban_missing
from tests.lab.f2bbgp import F2bBgp
from tests.lab.wait import wait_until, wait_until_empty

pytestmark = pytest.mark.skipif(bool(fail2ban_missing()), reason=fail2ban_missing() or "fail2ban present")

V4, V6 = "192.0.2.1", "2001:db8::1"
MAX_BANTIME = 3600
DAEMON_CONFIG = f"""
[daemon]
socket = "{{workdir}}/api.sock"
database = "{{workdir}}/state.db"
max_bantime = {MAX_BANTIME}
retry_interval = 0.2
[guards]
protected = [{{ prefix = "198.51.100.0/24", name = "our network" }}]
allow_special = ["192.0.2.0/24", "2001:db8::/32", "203.0.113.0/24"]
max_routes = 1000
max_rate = 10000
[bgp]
# 192.0.2.1 is fail2ban's test address here; as the default discard next-hop the guards would refuse it
discard_ipv4 = "192.0.2.254"
"""
SHORT = 4  # seconds, the "short" jail's bantime

# Test-only overrides and jails. "{action}" is bgp-blackhole or bgp-blackhole.py.
JAIL_LOCAL = """
[DEFAULT]
ignoreself = false
ignoreip =
backend = polling
maxretry = 1
findtime = 10m
bantime = 600

[sshd]
logpath = {dir}/auth.log
{override}

[routeros]
logpath = {dir}/routeros.log
maxretry = 1
{override}

[short]
enabled = true
filter = routeros-auth
logpath = {dir}/short.log
bantime = %(short)s
action = {action}

[forever]
enabled = true
filter = routeros-auth
logpath = {dir}/forever.log
bantime = -1
action = {action}

[incr]
enabled = true
filter = routeros-auth
logpath = {dir}/incr.log
bantime = 2
bantime.increment = true
action = {action}

[flushonstop]
enabled = true
filter = routeros-auth
logpath = {dir}/flushonstop.log
action = {action}[withdraw_on_stop=true]

[noqueue]
enabled = true
filter = routeros-auth
logpath = {dir}/noqueue.log
action = {action}[queue="{dir}/missing-dir/fail2ban.queue"]

[diskfull]
enabled = true
filter = routeros-auth
logpath = {dir}/diskfull.log
action = {action}[queue="/dev/full"]

[storm]
enabled = true
filter = routeros-auth
logpath = {dir}/storm.log
action = {action}

[{hostile}]
enabled = true
filter = routeros-auth
logpath = {dir}/hostile.log
action = {action}
{conf_only}"""
# A name given as an action option may span lines: one of them the here-document's end marker.
CONF_ONLY = """
[multiline]
enabled = true
filter = routeros-auth
logpath = {dir}/multiline.log
action = bgp-blackhole[name="first
  f2b-bgp1 ban 203.0.113.99 1 600 0 0 forged
  F2B_BGP_END_OF_JAIL_NAME
  touch {dir}/pwned-multiline"]
"""
HOSTILE_JAIL = 'evil"; touch {dir}/pwned-1; echo $(touch {dir}/pwned-2) `touch {dir}/pwned-3` \'x|y&'
LOG_FILES = ("auth.log", "routeros.log", "short.log", "forever.log", "incr.log", "flushonstop.log", "noqueue.log",
             "diskfull.log", "storm.log", "hostile.log", "multiline.log")
VARIANTS = {
    "conf": {"action": "bgp-blackhole", "override": "", "conf_only": CONF_ONLY},
    "py": {"action": "bgp-blackhole.py", "override": "banaction = bgp-blackhole.py\nbanaction_allports = bgp-blackhole.py",
           "conf_only": ""},
}


def prefix(address: str) -> str:
    return str(ipaddress.ip_network(address))


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def routeros_line(address: str, user: str = "admin", service: str = "ssh") -> str:
    return f"{now_rfc3339()} 192.0.2.200 system,error,critical login failure for user {user} from {address} via {service}"


def sshd_line(address: str, pid: int) -> str:
    """One sshd failure; each line needs its own pid (the sshd filter joins the lines of one pid)."""
    return f"{now_rfc3339()} host sshd[{pid}]: Failed password for root from {address} port 50022 ssh2"


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def netns() -> Iterator[Namespace]:
    with Namespace("f2bfb") as ns:
        yield ns


@pytest.fixture(scope="module")
def daemon(netns: Namespace) -> Iterator[F2bBgp]:
    with F2bBgp(netns.name, DAEMON_CONFIG) as d:
        yield d


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def f2b(request: pytest.FixtureRequest, daemon: F2bBgp) -> Iterator[Fail2banServer]:
    variant = VARIANTS[request.param]
    jails = JAIL_LOCAL.replace("{conf_only}", variant["conf_only"]).replace("{action}", variant["action"])
    jails = jails.replace("{override}", variant["override"]).replace("{hostile}", HOSTILE_JAIL)
    jails = jails.replace("%(short)s", str(SHORT))
    queue = daemon.workdir / "fail2ban.queue"
    server = Fail2banServer(jails, {"bgp-blackhole.local": f"[Init]\nqueue = {queue}\n"},
                            env={"F2B_BGP_SOCKET": str(daemon.socket), "F2B_BGP_QUEUE": str(queue)},
                            log_files=LOG_FILES)
    server.variant = request.param  # type: ignore[attr-defined]
    server.action = variant["action"]  # type: ignore[attr-defined]
    with server:
        yield server


@pytest.fixture(autouse=True)
def clean(f2b: Fail2banServer, daemon: F2bBgp, netns: Namespace) -> Iterator[None]:
    """Each test starts with no ban in fail2ban, none in the daemon, no route."""
    if not any(p.alive() for p in daemon.processes):
        daemon.start()
    if not any(p.alive() for p in f2b.processes):
        f2b.start()
    f2b.client("unban", "--all")
    wait_queue_applied(daemon)
    daemon.call("flush")
    wait_until_empty(netns.routes, 10, "no routes before the test")
    yield


def claims(daemon: F2bBgp, jail: str | None = None) -> dict[str, dict]:
    """prefix -> owner entry of `jail` (or the only owner)."""
    out = {}
    for ban in daemon.call("list")["bans"]:
        for owner in ban["owners"]:
            if jail is None or owner["jail"] == jail:
                out[ban["prefix"]] = owner
    return out


def wait_routes(netns: Namespace, f2b: Fail2banServer, daemon: F2bBgp, present: set[str], absent: set[str] = frozenset(),
                timeout: float = 15, what: str = "routes") -> None:
    def missing() -> list[str]:
        have = netns.routes()
        return [f"missing {p}" for p in sorted(present) if have.get(p) != "blackhole"] + \
               [f"still {p}" for p in sorted(absent) if p in have]
    try:
        wait_until_empty(missing, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nroutes: {netns.routes()}\n{f2b.log_tail(40)}\n{daemon.log_tail(20)}") from None


def wait_queue_applied(daemon: F2bBgp, timeout: float = 30) -> None:
    wait_until(lambda: daemon.call("status")["queue"]["depth"] == 0, timeout, "the daemon applied the fail2ban queue")


def wait_banned(f2b: Fail2banServer, jail: str, addresses: set[str], timeout: float = 15) -> None:
    wait_until(lambda: addresses <= set(f2b.banned(jail)), timeout, f"fail2ban {jail} bans {sorted(addresses)}")


# --- the steps --------------------------------------------------------------------------------

def test_010_shipped_jails_use_the_action(f2b: Fail2banServer) -> None:
    jails = f2b.client("status").stdout
    for jail in ("sshd", "routeros", "short", "forever", "incr", "flushonstop", "noqueue", "diskfull", "storm"):
        assert jail in jails
    for jail in ("sshd", "routeros"):
        actions = f2b.client("get", jail, "actions").stdout
        assert "bgp-blackhole" in actions and "iptables" not in actions, actions
    assert f"action.d/{'bgp-blackhole.py' if f2b.variant == 'py' else 'bgp-blackhole.conf'}" in \
        "\n".join(str(p.relative_to(f2b.conf)) for p in f2b.conf.rglob("bgp-blackhole*"))


def test_020_log_lines_blackhole_v4_and_v6(f2b: Fail2banServer, daemon: F2bBgp, netns: Namespace) -> None:
    append(f2b.workdir / "routeros.log", [routeros_line(V4, service="winbox"), routeros_line(V6, service="web")])
    append(f2b.workdir / "auth.log", [sshd_line("192.0.2.2", 4001), sshd_line("2001:db8::2", 4002)])
    wait_routes(netns, f2b, daemon, {prefix(V4), prefix(V6), "192.0.2.2/32", "2001:db8::2/128"}, what="bans from log lines")
    owners = claims(daemon)
    assert {p: o["jail"] for p, o in owners.items()} == {
        prefix(V4): "routeros", prefix(V6): "routeros", "192.0.2.2/32": "sshd", "2001:db8::2/128": "sshd"}
    bantimes = {"routeros": 3600, "sshd": 600}  # jail.d/routeros-bgp-blackhole.conf; jail.local [DEFAULT]
    for owner in owners.values():  # expiry = the ban's start + the jail's bantime
        assert owner["expires"] - owner["created"] == pytest.approx(bantimes[owner["jail"]], abs=0.01)
        assert time.time() - 30 < owner["created"] <= time.time()


def test_030_unban_withdraws(f2b: Fail2banServer, daemon: F2bBgp, netns: Namespace) -> None:
    f2b.client("set", "routeros", "banip", V4, V6, "192.0.2.3")
    wait_routes(netns, f2b, daemon, {prefix(V4), prefix(V6), "192.0.2.3/32"})
    f2b.client("set", "routeros", "unbanip", V4, V6)
    wait_routes(netns, f2b, daemon, {"192.0.2.3/32"}, {prefix(V4), prefix(V6)}, what="unban withdrawn")


def test_040_expiry_withdraws(f2b: Fail2banServer, daemon: F2bBgp, netns: Namespace) -> None:
    append(f2b.workdir / "short.log", [routeros_line(V4), routeros_line(V6)])
    wait_routes(netns, f2b, daemon, {prefix(V4), prefix(V6)}, what="short bans")
    assert claims(daemon, "short")[prefix(V4)]["expires"] - claims(daemon, "short")[prefix(V4)]["created"] == \
        pytest.approx(SHORT, abs=0.01)
    wait_routes(netns, f2b, daemon, set(), {prefix(V4), prefix(V6)}, timeout=SHORT + 10, what="expiry")
    wait_until(lambda: not f2b.banned("short"), 10, "fail2ban's own unban at expiry")


def test_050_stop_and_start_keep_routes_and_restore_idempotently(f2b: Fail2banServer, daemon: F2bBgp,
                                                                 netns: Namespace) -> None:
    f2b.client("set", "routeros", "banip", V4, V6)
    wait_routes(netns, f2b, daemon, {prefix(V4), prefix(V6)})
    before = claims(daemon, "routeros")
    assert all("restored=0" in o["reason"] for o in before.values()), before
    f2b.stop()  # fail2ban-client stop: flush + actionstop ran, the server is gone
    assert set(netns.routes()) == {prefix(V4), prefix(V6)}
    assert claims(daemon, "routeros") == before
    f2b.start()
    wait_banned(f2b, "routeros", {V4, V6})
    wait_until(lambda: all("restored=1" in o["reason"] for o in claims(daemon, "routeros").values()), 15,
               "restored bans handed to the daemon")
    after = claims(daemon, "routeros")
    for p in (prefix(V4), prefix(V6)):  # same start, same expiry: not restart time + bantime
        # (fail2ban's database keeps the ban time rounded to the second: a restored <time> may differ by < 1 s)
        assert after[p]["created"] == pytest.approx(before[p]["created"], abs=1)
        assert after[p]["expires"] == pytest.approx(before[p]["expires"], abs=1)
    assert set(netns.routes()) == {prefix(V4), prefix(V6)}
    assert "Restore Ban" in f2b.log_text()


def test_060_unban_due_while_fail2ban_is_down_is_carried_out(f2b: Fail2banServer, daemon: F2bBgp,
                                                           netns: Namespace) -> None:
    f2b.client("set", "short", "banip", V4, V6)
    wait_routes(netns, f2b, daemon, {prefix(V4), prefix(V6)})
    expires = max(o["expires"] for o in claims(daemon, "short").values())
    f2b.stop()
    if time.time() < expires - 0.5:
        assert set(netns.routes()) == {prefix(V4), prefix(V6)}, "fail2ban stop withdrew routes"
    wait_routes(netns, f2b, daemon, set(), {prefix(V4), prefix(V6)}, timeout=SHORT + 10, what="daemon expiry, fail2ban down")
    # fail2ban's database rounds the ban time to the second: past that, it must not restore these bans
    wait_until(lambda: time.time() > expires + 1, SHORT + 10, "fail2ban's rounded expiry passed")
    f2b.start()
    f2b.client("set", "routeros", "banip", "192.0.2.4")  # synchronous: after it, restored bans were processed
    wait_routes(netns, f2b, daemon, {"192.0.2.4/32"})
    assert set(netns.routes()) == {"192.0.2.4/32"}
    assert f2b.banned("short") == []


def test_070_permanent_ban_is_capped_by_the_daemon(f2b: Fail2banServer, daemon: F2bBgp, netns: Namespace) -> None:
    f2b.client("set", "forever", "banip", V4, V6)
    wait_routes(netns, f2b, daemon, {prefix(V4), prefix(V6)})
    for owner in claims(daemon, "forever").values():
        assert owner["expires"] - owner["created"] == pytest.approx(MAX_BANTIME, abs=0.01)


def test_075_bantime_increment_prolongs_the_route(f2b: Fail2banServer, daemon: F2bBgp, netns: Namespace) -> None:
    f2b.client("set", "incr", "banip", V4)
    wait_routes(netns, f2b, daemon, {prefix(V4)})
    assert claims(daemon, "incr")[prefix(V4)]["expires"] - claims(daemon, "incr")[prefix(V4)]["created"] == \
        pytest.approx(2, abs=0.01)
    wait_until(lambda: not f2b.banned("incr"), 15, "first ban over")
    f2b.client("set", "incr", "banip", V4)  # a repeat offender: base bantime first, the longer one by prolong
    wait_until(lambda: (lambda o: o and o["expires"] - o["created"] >= 3.99)(claims(daemon, "incr").get(prefix(V4))),
               15, "prolonged to 4 s (2 * 2^1)")
    wait_routes(netns, f2b, daemon, set(), {prefix(V4)}, timeout=15, what="prolonged ban expired")


def test_080_unban_all_and_withdraw_on_stop(f2b: Fail2banServer, daemon: F2bBgp, netns: Namespace) -> None:
    f2b.client("set", "routeros", "banip", V4)
    f2b.client("set", "flushonstop", "banip", V6)
    wait_routes(netns, f2b, daemon, {prefix(V4), prefix(V6)})
    f2b.client("unban", "--all")
    if f2b.variant == "py":  # the Python action can tell "unban --all" from a stop: withdraws
        wait_routes(netns, f2b, daemon, set(), {prefix(V4), prefix(V6)}, what="unban --all withdrew")
    else:  # the shell action cannot: routes stay (docs/fail2ban.md), except with withdraw_on_stop
        wait_routes(netns, f2b, daemon, {prefix(V4)}, {prefix(V6)}, what="withdraw_on_stop jail flushed")
    f2b.client("set", "flushonstop", "banip", V6)
    wait_routes(netns, f2b, daemon, {prefix(V6)})
    f2b.client("stop", "flushonstop")  # stop of one jail: flush with withdraw_on_stop
    wait_routes(netns, f2b, daemon, set(), {prefix(V6)}, what="withdraw_on_stop at jail stop")
    f2b.stop()  # bring the stopped jail back for the next tests (clean() starts the server)


def test_090_hostile_log_lines_run_no_command(f2b: Fail2banServer, daemon: F2bBgp, netns: Namespace,
                                              tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    marker.mkdir()
    mark = len(f2b.log_text())
    hostile = {
        "192.0.2.11": f"$(touch {marker}/1)",
        "192.0.2.12": f"`touch {marker}/2`",
        "192.0.2.13": f"x;touch {marker}/3;",
        "192.0.2.14": f"x'; touch {marker}/4; echo '",
        "192.0.2.15": f'x"; touch {marker}/5; echo "',
        "192.0.2.16": f"x|touch {marker}/6",
        "2001:db8::11": f"x#012touch {marker}/7 && $(touch {marker}/8)",
        "2001:db8::12": f"--withdraw-all $IFS<{marker}/9 >{marker}/10 &",
    }
    append(f2b.workdir / "routeros.log", [routeros_line(a, user=u) for a, u in hostile.items()])
    wait_routes(netns, f2b, daemon, {prefix(a) for a in hostile}, what="bans from hostile lines")
    assert sorted(p.name for p in marker.iterdir()) == []
    reasons = json.dumps(claims(daemon, "routeros"))
    assert "touch" not in reasons and marker.name not in reasons
    new_log = f2b.log_text()[mark:]
    assert new_log.count("[routeros] Ban ") == len(hostile), new_log
    assert [line for line in new_log.splitlines() if "ERROR" in line and "routeros" in line] == []


def test_100_a_queue_that_cannot_be_written_fails_visibly(f2b: Fail2banServer, daemon: F2bBgp) -> None:
    if f2b.variant == "py":  # the Python action queues only what the daemon cannot take
        daemon.stop()
        daemon.processes.clear()
    mark = len(f2b.log_text())
    f2b.client("set", "noqueue", "banip", V4)  # fail2ban keeps it banned; the failure is in its log
    f2b.client("set", "diskfull", "banip", V6)
    new_log = f2b.log_text()[mark:]
    for jail in ("noqueue", "diskfull"):
        assert f"Failed to execute ban jail '{jail}'" in new_log, new_log
    assert "cannot append to the queue" in new_log and "missing-dir/fail2ban.queue" in new_log, new_log
    assert "/dev/full" in new_log, new_log


def test_110_reload_keeps_the_action(f2b: Fail2banServer, daemon: F2bBgp, netns: Namespace) -> None:
    f2b.client("reload")
    f2b.client("set", "routeros", "banip", V4, V6)
    wait_routes(netns, f2b, daemon, {prefix(V4), prefix(V6)}, what="bans after reload")
    f2b.client("set", "routeros", "unbanip", V4, V6)
    wait_routes(netns, f2b, daemon, set(), {prefix(V4), prefix(V6)}, what="unbans after reload")


def test_120_a_refused_ban_is_in_the_daemons_log_and_events(f2b: Fail2banServer, daemon: F2bBgp) -> None:
    mark = len(f2b.log_text())
    f2b.client("set", "routeros", "banip", "198.51.100.7")  # inside guards.protected
    def refused() -> list[dict]:
        return [e for e in daemon.call("events", prefix="198.51.100.7", limit=20)["events"] if "protected" in e["detail"]]
    found = wait_until(refused, 10, "the refusal in the event log")
    assert any(e["event"] == "refuse" and "our network" in e["detail"] for e in found), found
    listing = daemon.cli("events", "--prefix", "198.51.100.7", "--since", "5m")
    assert listing.returncode == 0 and "protected" in listing.stdout, listing
    assert "guard=protected" in daemon.log_tail(200)
    if f2b.variant == "py":  # the Python action also puts the daemon's reason in fail2ban's log
        wait_until(lambda: "198.51.100.7 refused: refused: protected" in f2b.log_text()[mark:], 10,
                   "the refusal in fail2ban's log")


def test_130_hostile_jail_names_run_nothing_and_forge_no_line(f2b: Fail2banServer, daemon: F2bBgp,
                                                              netns: Namespace) -> None:
    """A jail name that is not a plain token is refused by the daemon (docs/contracts.md, names):
    its ban runs nothing, forges nothing, and says why; a valid first line of a multi-line name is a name."""
    name = HOSTILE_JAIL.replace("{dir}", str(f2b.workdir))
    f2b.client("set", name, "banip", V4)
    if f2b.variant == "conf":
        f2b.client("set", "multiline", "banip", V6)  # the jail is called "multiline", the action's name differs
        wait_routes(netns, f2b, daemon, {prefix(V6)}, what="the ban of the multi-line name's first line")
        assert {o["jail"]: p for p, o in claims(daemon).items()} == {"first": prefix(V6)}
        refusal = lambda: any(e["event"] == "queue" and "refused (usage): owner name" in e["detail"]  # noqa: E731
                              for e in daemon.call("events", prefix=V4)["events"])
    else:
        refusal = lambda: "refused: usage: field 'jail' must be" in f2b.log_tail(40)  # noqa: E731
    wait_until(refusal, 15, "the hostile jail's ban refused with its reason")
    assert prefix(V4) not in netns.routes()
    assert sorted(p.name for p in f2b.workdir.glob("pwned*")) == []
    assert "203.0.113.99/32" not in netns.routes() and "forged" not in json.dumps(daemon.call("list"))


def test_200_bans_and_unbans_while_the_daemon_is_down_are_applied_when_it_is_back(
        f2b: Fail2banServer, daemon: F2bBgp, netns: Namespace) -> None:
    ips = [f"203.0.113.{i}" for i in range(1, 51)] + [f"2001:db8:203::{i:x}" for i in range(1, 51)]
    daemon.stop()
    daemon.processes.clear()
    before = time.time()
    f2b.client("set", "storm", "banip", *ips)
    f2b.client("set", "storm", "unbanip", *ips[45:55])
    after = time.time()
    assert len(f2b.banned("storm")) == 90
    daemon.start()
    kept = {prefix(a) for a in ips[:45] + ips[55:]}
    wait_routes(netns, f2b, daemon, kept, {prefix(a) for a in ips[45:55]}, timeout=30, what="queued bans applied")
    assert set(netns.routes()) == kept
    started = daemon.call("status")["uptime"]
    for owner in claims(daemon, "storm").values():  # fail2ban's ban time, not the time the daemon applied it
        assert before - 1 <= owner["created"] <= after and owner["expires"] - owner["created"] == pytest.approx(600, abs=0.01)
    assert after < time.time() - started  # the daemon started after the last ban
    applied = [e for e in daemon.call("events", jail="storm", limit=1000)["events"] if e["event"] == "queue"]
    assert len(applied) >= 110 and all(e["detail"].endswith(("active", "removed")) for e in applied[-110:]), applied[-3:]


def test_210_kill_9_of_the_daemon_in_a_storm_loses_nothing(f2b: Fail2banServer, daemon: F2bBgp,
                                                          netns: Namespace) -> None:
    ips = [f"203.0.113.{i}" for i in range(1, 201)] + [f"2001:db8:203::{i:x}" for i in range(1, 201)]
    storm = threading.Thread(target=f2b.client, args=("set", "storm", "banip", *ips), daemon=True)
    storm.start()
    wait_until(lambda: len(netns.routes()) >= 20, 30, "the storm under way")
    daemon.kill()
    daemon.processes.clear()
    daemon.start()
    storm.join(120)
    assert not storm.is_alive()
    wait_routes(netns, f2b, daemon, {prefix(a) for a in ips}, timeout=60, what="every ban of the storm")
    assert len(claims(daemon, "storm")) == len(ips)


def test_220_both_stopped_and_started_with_the_queue_on_disk(f2b: Fail2banServer, daemon: F2bBgp,
                                                           netns: Namespace) -> None:
    daemon.stop()
    daemon.processes.clear()
    f2b.client("set", "storm", "banip", V4, V6, "203.0.113.9")
    f2b.client("set", "storm", "unbanip", "203.0.113.9")
    f2b.stop()
    assert (daemon.workdir / "fail2ban.queue").read_text().count("\n") >= 4
    f2b.start()  # restores V4 and V6 (restored=1): queued again, behind the first lines
    wait_banned(f2b, "storm", {V4, V6})
    daemon.start()
    wait_routes(netns, f2b, daemon, {prefix(V4), prefix(V6)}, {"203.0.113.9/32"}, timeout=30, what="queue after both restarts")
    assert set(netns.routes()) == {prefix(V4), prefix(V6)}
    wait_queue_applied(daemon)
    assert daemon.call("status")["queue"]["malformed"] == 0
