"""Domain assertions that explain failure: what was looked for, what the peer had, the daemon's log."""

from __future__ import annotations

from collections.abc import Iterable

from .netns import Topology
from .peers import KernelRoute, Peer, Route, kernel_routes, prefix_of
from .process import Process
from .wait import wait_until

MAX_SHOWN = 40


def _show(table: dict[str, object]) -> str:
    items = sorted(table.items())
    shown = "\n".join(f"    {k}: {v}" for k, v in items[:MAX_SHOWN])
    more = f"\n    ... {len(items) - MAX_SHOWN} more" if len(items) > MAX_SHOWN else ""
    return (shown + more) if items else "    (nothing)"


def _fail(what: str, had: dict[str, object], log: str) -> AssertionError:
    return AssertionError(f"{what}\n  had:\n{_show(had)}\n  log tail:\n{log}")


def assert_established(peer: Peer, peer_address: str, timeout: float = 20) -> None:
    try:
        wait_until(lambda: peer.established(peer_address), timeout, f"{peer.name} session with {peer_address}")
    except AssertionError as exc:
        raise _fail(str(exc), {}, peer.log_tail()) from None


def assert_route(peer: Peer, prefix: str, communities: Iterable[str] | None = None, nexthop: str | None = None,
                 timeout: float = 10) -> Route:
    """Wait until the peer's post-policy RIB has prefix (with these communities included, and this next hop)."""
    prefix, wanted = prefix_of(prefix), frozenset(communities or ())
    last: dict[str, Route] = {}

    def present() -> Route | None:
        last.clear()
        last.update(peer.rib())
        route = last.get(prefix)
        if route and wanted <= route.communities and (nexthop is None or route.nexthop == nexthop):
            return route
        return None

    try:
        return wait_until(present, timeout, "route")
    except AssertionError as exc:
        raise _fail(f"{exc}\n{peer.name}: no route {prefix} with communities {sorted(wanted)} nexthop {nexthop or 'any'} "
                    f"within {timeout:g} s", dict(last), peer.log_tail()) from None


def assert_no_route(peer: Peer, prefix: str, timeout: float = 10) -> None:
    """Wait until prefix is absent (e.g. after a withdraw). For "never accepted", first wait for a route
    sent after it (UPDATEs are ordered), then call this: absence alone proves nothing."""
    prefix = prefix_of(prefix)
    last: dict[str, Route] = {}

    def absent() -> bool:
        last.clear()
        last.update(peer.rib())
        return prefix not in last

    try:
        wait_until(absent, timeout, "no route")
    except AssertionError as exc:
        raise _fail(f"{exc}\n{peer.name}: {prefix} still present after {timeout:g} s", dict(last), peer.log_tail()) from None


def _log_of(source: Peer | Process | None) -> str:
    return source.log_tail() if source is not None else "(no daemon given)"


def assert_kernel_blackhole(topology: Topology, node: str, prefix: str, timeout: float = 10,
                            daemon: Peer | Process | None = None) -> KernelRoute:
    """Wait until the node's main table routes prefix as type blackhole (the best metric for it)."""
    prefix = prefix_of(prefix)
    last: dict[str, KernelRoute] = {}

    def present() -> KernelRoute | None:
        last.clear()
        last.update(kernel_routes(topology, node))
        route = last.get(prefix)
        return route if route and route.type == "blackhole" else None

    try:
        return wait_until(present, timeout, "kernel blackhole")
    except AssertionError as exc:
        raise _fail(f"{exc}\n{topology.ns(node)}: no kernel blackhole {prefix} within {timeout:g} s", dict(last),
                    _log_of(daemon)) from None


def assert_no_kernel_route(topology: Topology, node: str, prefix: str, timeout: float = 10,
                           daemon: Peer | Process | None = None) -> None:
    prefix = prefix_of(prefix)
    last: dict[str, KernelRoute] = {}

    def absent() -> bool:
        last.clear()
        last.update(kernel_routes(topology, node))
        return prefix not in last

    try:
        wait_until(absent, timeout, "no kernel route")
    except AssertionError as exc:
        raise _fail(f"{exc}\n{topology.ns(node)}: kernel route {prefix} still present after {timeout:g} s", dict(last),
                    _log_of(daemon)) from None
