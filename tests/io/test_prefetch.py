"""prefetch: results in order, a bounded window ahead, errors passed on and the rest cancelled."""

from __future__ import annotations

import threading
import time

import pytest

from glipcli.io.prefetch import prefetch


def test_prefetch_keeps_order_and_a_bounded_window():
    pulled, consumed, lock = [0], [0], threading.Lock()
    ahead = []

    def items():
        for i in range(40):
            with lock:
                pulled[0] += 1
                ahead.append(pulled[0] - consumed[0])
            yield i

    def work(i):
        time.sleep(0.001 * (i % 3))  # finish out of order
        return i * i

    results = []
    for value in prefetch(work, items(), workers=3):
        consumed[0] += 1
        results.append(value)
    assert results == [i * i for i in range(40)]
    assert max(ahead) <= 2 * 3 + 1


def test_prefetch_passes_errors_and_cancels_the_rest():
    started = []

    def work(i):
        started.append(i)
        if i == 2:
            raise ValueError("boom")
        time.sleep(0.01)
        return i

    results = prefetch(work, range(100), workers=2)
    assert [next(results), next(results)] == [0, 1]
    with pytest.raises(ValueError, match="boom"):
        next(results)
    assert len(started) <= 8
