"""pytest fixtures of the lab; the project's conftest does `from tests.lab.fixtures import *`.

topology          a fresh docs/contracts.md lab (no uRPF), removed after the test
urpf_topology     the same with loose uRPF on the firewall
topology_factory  call with Topology(...) keyword arguments; all removed after the test
server_listener   a TCP listener on the server of `topology` (port tests.lab.probe.PROBE_PORT)
lab_stack         a contextlib.ExitStack closed after the test: lab_stack.enter_context(Frr(...))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from .netns import Topology
from .probe import ServerListener

__all__ = ["topology", "urpf_topology", "topology_factory", "server_listener", "lab_stack"]


@pytest.fixture
def topology_factory() -> Iterator[Callable[..., Topology]]:
    with contextlib.ExitStack() as stack:
        yield lambda **options: stack.enter_context(Topology(**options))


@pytest.fixture
def topology() -> Iterator[Topology]:
    with Topology() as topo:
        yield topo


@pytest.fixture
def urpf_topology() -> Iterator[Topology]:
    with Topology(urpf="loose") as topo:
        yield topo


@pytest.fixture
def server_listener(topology: Topology) -> Iterator[ServerListener]:
    with ServerListener(topology) as listener:
        yield listener


@pytest.fixture
def lab_stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack
