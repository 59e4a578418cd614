"""Live tests (tests/live/) start real daemons in network namespaces: they need root."""

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/live/" in str(item.fspath):
            item.add_marker(pytest.mark.live)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="live tests need root (network namespaces)"))
