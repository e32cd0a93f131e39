"""The errors every L2 failure becomes; no redis import, so the core can catch them.

Every failure leaves the stores as one of two kinds: ``RemoteUnavailable`` when the endpoint
could not be reached or did not answer in time (the circuit breaker counts these), and
``RemoteRejected`` when Redis answered with an error about one command (a key of another type,
out of memory, no permission), which says nothing about the endpoint's health.
"""

from __future__ import annotations

__all__ = [
    "RemoteError",
    "RemotePartlyDown",
    "RemoteRejected",
    "RemoteSaturated",
    "RemoteUnavailable",
    "brief",
    "printable",
]


class RemoteError(Exception):
    """An L2 operation failed."""


class RemoteUnavailable(RemoteError):
    """Redis could not be reached, or did not answer within the timeout."""


class RemoteSaturated(RemoteUnavailable):
    """Every connection of our pool was busy for too long: a burst on our side, not an outage.

    The call skips L2 as for an outage (what the key holds now is unknown), but the breaker is
    not told: Redis itself is fine.
    """


class RemotePartlyDown(RemoteUnavailable):
    """A primary of a Redis Cluster does not answer, while others do: the keys it serves skip L2.

    As for an outage, for those keys only: the breaker, which would take the whole cluster off
    L2, is not told (see _l2.nodes).
    """


class RemoteRejected(RemoteError):
    """Redis answered one command with an error; the endpoint itself is fine.

    ``kept_in_redis``: for an invalidation, whether data stayed in Redis (else only the
    announcement to other processes was refused).
    """

    def __init__(self, message: str, *, kept_in_redis: bool = True) -> None:
        super().__init__(message)
        self.kept_in_redis = kept_in_redis


#: The most of an error's text that goes into a message or a log line.
BRIEF_CHARS = 240


def brief(error: BaseException) -> str:
    """Return ``"Kind: text"`` for ``error``, cut to BRIEF_CHARS.

    Some redis-py errors carry the repr of every client they tried (a sentinel's "No master
    found" is kilobytes of connection settings): a log line should name the failure, not that.
    """
    return printable(f"{type(error).__name__}: {error}")


def printable(text: str, limit: int | None = BRIEF_CHARS) -> str:
    """Return ``text`` fit for a log line or a terminal: control characters escaped, cut.

    Cut to ``limit`` characters (None: not cut). Redis supplies much of what errors say (a
    sentinel's primary host, a planted zone name in a value) and every key name: a newline
    would forge a log line, ESC drive a terminal (clear it, set its clipboard through OSC 52),
    a megabyte fill a disk.
    """
    kept = text if limit is None else text[: limit * 4]
    shown = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in kept)
    return shown if limit is None or len(shown) <= limit else shown[: limit - 1] + "\u2026"
