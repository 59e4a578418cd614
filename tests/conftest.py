"""Shared fixtures. Live tests (tests/live/) start real daemons in network namespaces: they need root."""

import os

import pytest

from tests.lab.fixtures import *  # noqa: F401,F403  (topology, urpf_topology, topology_factory, server_listener, lab_stack)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/live/" in str(item.fspath):
            item.add_marker(pytest.mark.live)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="live tests need root (network namespaces)"))
