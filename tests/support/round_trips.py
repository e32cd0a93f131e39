"""Count the commands (or pipelines) a test's code sends to Redis: one send is one round trip."""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import threading
from typing import Any

import pytest
import redis.connection


def count_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Return a list that gets an item for each packed command or pipeline sent, sync or async.

    Sync: each ``send_packed_command``. Async: each write to a connection's stream (redis.asyncio)
    or its transport (tiercache's lean path, which skips both).
    Only the calling thread's sends count: tiercache's listener thread may (re)subscribe or ping
    on its own schedule, which is not the round trip a test measures.
    """
    sends: list[int] = []
    caller = threading.get_ident()
    within = threading.local()  # (3.11's writelines writes through write(): one send, not two)
    for owner, name in (
        (redis.connection.AbstractConnection, "send_packed_command"),
        (asyncio.StreamWriter, "writelines"),
        (asyncio.selector_events._SelectorSocketTransport, "write"),  # type: ignore[attr-defined]
    ):
        original = getattr(owner, name)

        def counted(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if threading.get_ident() == caller and not getattr(within, "send", False):
                sends.append(1)
            within.send = True
            try:
                return _original(self, *args, **kwargs)
            finally:
                within.send = False

        monkeypatch.setattr(owner, name, counted)
    return sends
