"""Count the commands (or pipelines) a test's code sends to Redis: one send is one round trip."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio.connection
import redis.connection


def count_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Return a list that gets an item for each packed command or pipeline sent, sync or async."""
    sends: list[int] = []
    for module in (redis.connection, redis.asyncio.connection):
        original = module.AbstractConnection.send_packed_command

        def counted(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            sends.append(1)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(module.AbstractConnection, "send_packed_command", counted)
    return sends
