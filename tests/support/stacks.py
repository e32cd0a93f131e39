"""Run code on a small thread stack, where deep C recursion would crash the process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def in_small_stack(work: Callable[[], Any]) -> Any:
    """Run ``work`` in a thread with a 1 MiB stack; return its result or raise its exception."""
    outcome: list[Any] = []
    previous = threading.stack_size(1 << 20)
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
