"""Count the commands (or pipelines) a test's code sends to Redis: one send is one round trip."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis.connection


def count_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Return a list that gets an item for each packed command or pipeline sent, sync or async.

    Sync: each ``send_packed_command``. Async: each write to a connection's stream, where both
    redis.asyncio and tiercache's lean path (which skips send_packed_command) put a command.
    Only the calling thread's sends count: tiercache's listener thread may (re)subscribe or ping
    on its own schedule, which is not the round trip a test measures.
    """
    sends: list[int] = []
    caller = threading.get_ident()
    for owner, name in (
        (redis.connection.AbstractConnection, "send_packed_command"),
        (asyncio.StreamWriter, "writelines"),
    ):
        original = getattr(owner, name)

        def counted(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if threading.get_ident() == caller:
                sends.append(1)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
    return sends
