"""fail2ban bans while the daemon is down: the shipped `.conf` action queues each ban, the daemon applies
the queue when it is back (bench/faults.py at size; tests/live/test_fail2ban.py steps 200-220 small)."""

from __future__ import annotations

import ipaddress
import time
from contextlib import ExitStack

from .f2bbgp import F2bBgp
from .fail2ban import Fail2banServer
from .faults import Tally, compare, kernel_config, our_routes, stored
from .netns import Topology
from .wait import wait_until

JAIL_LOCAL = """[DEFAULT]
ignoreself = false
ignoreip =
backend = polling

# the shipped jail.d enables these two: they need a log to watch
[sshd]
logpath = {dir}/auth.log

[routeros]
logpath = {dir}/routeros.log

[storm]
enabled = true
filter = routeros-auth
logpath = {dir}/storm.log
maxretry = 1
bantime = 600
action = bgp-blackhole
"""
CHUNK = 500  # addresses per `fail2ban-client set storm banip`


def daemon_down(topology: Topology, bans: int) -> Tally:
    """The daemon stopped, fail2ban bans BANS addresses; the daemon started: routes against fail2ban's bans."""
    with ExitStack() as stack:
        daemon = stack.enter_context(F2bBgp(topology.ns("injector"), kernel_config(bans + 10),
                                            serve_args=("--discard",)))  # it creates the queue
        queue = daemon.workdir / "fail2ban.queue"
        f2b = stack.enter_context(Fail2banServer(JAIL_LOCAL, {"bgp-blackhole.local": f"[Init]\nqueue = {queue}\n"},
                                                 log_files=("storm.log", "auth.log", "routeros.log")))
        daemon.stop()
        addresses = [f"2001:db8:203:9::{i:x}" for i in range(1, bans + 1)]
        for start in range(0, bans, CHUNK):
            f2b.client("set", "storm", "banip", *addresses[start:start + CHUNK])
        acknowledged = {str(ipaddress.ip_network(a)) for a in f2b.banned("storm")}
        queued = queue.read_text().count("\n")
        started = time.monotonic()
        daemon.start()
        wait_until(lambda: set(our_routes(topology)) == stored(daemon) == acknowledged, 300,
                   "every queued ban applied and routed")
        took = time.monotonic() - started
        lost, stale, dup = compare(our_routes(topology), stored(daemon), acknowledged)
        daemon.call("flush")
        return Tally("fail2ban, daemon down", len(acknowledged), lost, stale, dup, took,
                     f"{queued} lines queued by the .conf action while the daemon was down")
