"""Invalidations an endpoint owes: settled in the background once its Redis is back."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from tiercache import _background
from tiercache._l2.breaker import CircuitBreaker

__all__ = ["Creditor", "Debts"]


class Creditor(Protocol):
    """What the debts read of the endpoint they are owed to."""

    @property
    def closed(self) -> bool:
        """Whether the endpoint was closed (debts then wait for it to reopen)."""

    @property
    def breaker(self) -> CircuitBreaker:
        """Whether Redis is back: the debts are settled as it closes."""


class Debts:
    """The caches owing one endpoint invalidations it could not take, and how each settles them.

    Held weakly: a cache that is gone owes nothing. ``lock`` is the endpoint's, so that a close
    of the endpoint and a settling never cross (see ``settle``).
    """

    def __init__(self, endpoint: Creditor, lock: threading.Lock) -> None:
        self._endpoint = weakref.ref(endpoint)
        self._lock = lock
        self._debtors: weakref.WeakKeyDictionary[Any, Callable[[Any, Any], object]] = (
            weakref.WeakKeyDictionary()
        )

    def owe(self, debtor: Any, settle: Callable[[Any, Any], object]) -> None:
        """Have ``settle(debtor, endpoint)`` run on a background thread once the endpoint is back.

        For invalidations it could not take: they reach Redis (and other processes' L1s) when
        the breaker closes, not at the debtor's next call, which may never come. At once if the
        breaker is closed already. ``settle`` must not hold ``debtor`` (it is held weakly).
        """
        with self._lock:
            self._debtors[debtor] = settle
        endpoint = self._endpoint()
        if endpoint is not None and endpoint.breaker.closed:
            self.settle()

    def settle(self) -> None:
        """Settle every debt, in the background (the breaker calls this as it closes)."""
        endpoint = self._endpoint()
        with self._lock:
            if endpoint is None or endpoint.closed:
                return  # (kept: settled once it reopens and is back, or at the debtor's next call)
            debts = list(self._debtors.items())
            self._debtors.clear()
        if debts:
            _background.submit(
                lambda: [settle(debtor, endpoint) for debtor, settle in debts],
                dropped=lambda: self._remember(debts),  # (tiercache closing: settled when back)
            )

    def _remember(self, debts: list[tuple[Any, Callable[[Any, Any], object]]]) -> None:
        with self._lock:
            for debtor, settle in debts:
                self._debtors.setdefault(debtor, settle)
