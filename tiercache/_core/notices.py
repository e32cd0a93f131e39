"""What a cache logs once: the first time each kind of trouble is seen, not at every call."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["Notices"]

logger = logging.getLogger("tiercache")


class Notices:
    """The kinds of trouble one cache has logged already (a Redis that refuses, say, every call)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def once(self, tag: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
        """Log ``message`` the first time ``tag`` is seen."""
        if tag not in self._seen:
            self._seen.add(tag)
            logger.log(level, message, *args)
