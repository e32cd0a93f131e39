"""The exceptions tiercache raises to its callers (everything else stays inside)."""

from __future__ import annotations

__all__ = ["ComputeTimeoutError", "InvalidationError", "ReentrantCallError"]


class InvalidationError(RuntimeError):
    """Redis refused an invalidation or clear: the old value may still be served.

    Raised by ``cache_invalidate()`` / ``cache_clear()`` (and the adapters' ``delete`` /
    ``clear``) after dropping what they could in this process. ``function`` names the cache,
    ``error`` is Redis's refusal, ``remains`` says what may still serve the old value.
    (An unreachable Redis is not a refusal: the invalidation is replayed once it is back.)
    """

    def __init__(self, function: str, action: str, endpoint: str, error: str, remains: str) -> None:
        super().__init__(
            f"{function}: {action} was refused by Redis at {endpoint}: {error}. "
            f"Dropped from this process's L1; {remains}."
        )
        self.function = function
        self.error = error
        self.remains = remains


class ReentrantCallError(RecursionError):
    """A call would wait for a result its own thread or task is computing: it could never come.

    ``f(x)`` calling ``f(x)``, or a cycle ``a(1)`` -> ``b(1)`` -> ``a(1)`` (in one thread or
    task, or across threads that wait on each other): the innermost call raises this instead of
    waiting for ever. The runs it unwinds through end with it, so the key is never left stuck.
    A subclass of RecursionError, which is what ``functools.lru_cache`` raises here.
    """

    def __init__(self, function: str) -> None:
        super().__init__(
            f"{function}: this call waits for a result that its own thread or task is computing "
            "(the function calls itself with the same arguments, directly or through other cached "
            "calls), so it would wait for ever"
        )
        self.function = function


class ComputeTimeoutError(TimeoutError):
    """A cached function ran longer than its ``hard_timeout`` and no stale value could stand in.

    The caller gets this; the run itself goes on in the background and fills the cache when it
    ends, so a later call may find its value. ``function`` names the cache, ``seconds`` the limit.
    """

    def __init__(self, function: str, seconds: float) -> None:
        super().__init__(
            f"{function}: the function ran longer than hard_timeout={seconds:g} s and no stale "
            "value was at hand; it goes on in the background and fills the cache when it ends"
        )
        self.function = function
        self.seconds = seconds
