"""Run actions in threads that start together, with the GIL switching as often as it can."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any


def at_once(actions: list[Callable[[], Any]]) -> None:
    """Run ``actions`` in threads released together by a barrier; return once all have ended."""
    barrier = threading.Barrier(len(actions))

    def run(action: Callable[[], Any]) -> None:
        barrier.wait()
        action()

    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        sys.setswitchinterval(before)
