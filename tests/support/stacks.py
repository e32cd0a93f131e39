"""Run code on a small thread stack, where deep C recursion would crash the process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: musl's built-in thread stack size (Alpine's Python threads get it unless a size is set).
MUSL_THREAD_STACK = 128 * 1024


def in_small_stack(work: Callable[[], Any], size: int = MUSL_THREAD_STACK) -> Any:
    """Run ``work`` in a thread with a ``size`` stack; return its result or raise its exception."""
    outcome: list[Any] = []
    previous = threading.stack_size(size)
    try:

        def run() -> None:
            try:
                outcome.append(("value", work()))
            except BaseException as exc:
                outcome.append(("error", exc))

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(previous)
    kind, result = outcome[0]
    if kind == "error":
        raise result
    return result
