"""The exceptions tiercache raises to its callers (everything else stays inside)."""

from __future__ import annotations

__all__ = ["InvalidationError"]


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
