"""Read ahead: decoding (and preparing) images in threads while the model runs on earlier ones."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_END: Any = object()


def prefetch(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``fn(item)`` for each item, in order, computed ahead in ``workers`` threads.

    At most ``2 x workers`` results wait at any time, so memory stays bounded however many
    items come. Work still queued when the iterator is dropped is cancelled.
    """
    window: list[Future[R]] = []
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="glip-decode") as pool:
        try:
            while True:
                while len(window) < 2 * workers:
                    item = next(source, _END)
                    if item is _END:
                        break
                    window.append(pool.submit(fn, item))
                if not window:
                    return
                yield window.pop(0).result()
        finally:
            for future in window:
                future.cancel()
