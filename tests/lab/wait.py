"""Wait on a condition with a deadline: the only way the lab synchronises."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy and return that value.

    On the deadline raise AssertionError naming `what` and the last value seen
    (or the last exception the predicate raised: a daemon not answering yet is a
    value, not a failure). An AssertionError from the predicate is final and
    propagates at once (e.g. "the daemon exited"). Bounded in time; the predicate
    is always tried at least once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except AssertionError:
            raise
        except Exception as exc:
            value, last = None, exc
        else:
            last = value
            if value:
                return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last value: {last!r}")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def wait_until_empty(collect: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `collect` until it returns something empty (e.g. a list of what is still missing).

    On the deadline raise AssertionError naming `what` and the last non-empty value.
    """
    last: list[T] = []

    def empty() -> bool:
        value = collect()
        last[:] = [value]
        return not value

    try:
        wait_until(empty, timeout, what, interval)
    except AssertionError:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; still: {last[0] if last else None!r}") from None
