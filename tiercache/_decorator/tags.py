"""Tags: drop every entry that carries a name, in every function, tier and process at once.

Each tag has a key in Redis, ``<namespace>:tag:<digest>``, holding a random token (one key per
tag: on a cluster every tag lives in a slot of its own, and nothing spans two). A tagged entry
starts with the tokens its tags held when its value was *read for*, before the function ran
(``_l2.envelope.tag_block``). Every L2 read of a tagged function fetches those tokens with the
entry, in the same MGET, and an entry whose tokens differ from Redis's is a miss: nothing
caches a tag's token, so no process can miss an invalidation by trusting an old one (the
HybridCache bug the issue names). ``invalidate_tags()`` gives each tag a new token, so every
entry carrying it is a miss from then on, and a run that read before is written with the old
token: a miss for every reader, as a value computed before ``cache_invalidate()`` is refused.

An entry never carries "no token": a run that found a tag's key missing claims one first (SET
NX, then GET: the first claimant's token wins), so a tag key that expires or is evicted turns
its entries into misses, never back into hits.

L1 entries are found by the L1 keys each function noted under its tags' digests when a call
missed L1; those are dropped here, and in other processes by an announcement on the
namespace's channel naming the tags' digests (heard by each function's ``TagListener``).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, Final

from tiercache._core import ops
from tiercache._core.ops import Flow, Op, l2_op
from tiercache._core.repairs import defer
from tiercache._core.shells import afinish, run
from tiercache._decorator import config as _config
from tiercache._decorator import registry as _registry
from tiercache._decorator.tag_names import TAG_FLOOR, TOKENS, TagListener, checked_names, digest_of, tag_key
from tiercache._errors import InvalidationError
from tiercache._l2.coherence import announcement, channel_for
from tiercache._l2.envelope import new_token
from tiercache._l2.errors import RemoteError, RemoteUnavailable
from tiercache._l2.signing import Signer

if TYPE_CHECKING:
    from tiercache._decorator.function import FunctionCache
    from tiercache._l2.deployments import Endpoint

__all__ = ["ainvalidate_tags", "invalidate_tags"]

_OWNER: Final = "tiercache.invalidate_tags()"
logger = logging.getLogger("tiercache")


def _drop_tagged(digests: Sequence[str]) -> None:
    """Drop what every function of this process keeps under ``digests``: L1 entries, runs under way."""
    for cache in _registry.all_caches():
        if cache.tags is not None and cache.tags.spec.may_carry(digests):
            cache.tags.drop(digests)


# -- invalidating ---------------------------------------------------------------------------


def invalidate_tags(*tags: str) -> None:
    """Drop every cached entry carrying any of ``tags``, in every function, tier and process.

    In L1 and L2, here and in every process on the same Redis (through the coherence channel).
    The same guarantee as ``cache_invalidate()`` (see docs/invalidation.md): once it returns,
    no call made afterwards, in this process or (from Redis) in another, gets a value computed
    before; other processes' L1s drop theirs when they hear of it (about a millisecond). Redis
    unreachable: the functions here that may carry the tags are cleared once it is back, and
    stay off Redis until then. Raise InvalidationError if Redis refuses.
    """
    run(_invalidate_flow(checked_names(tags, _OWNER)))


async def ainvalidate_tags(*tags: str) -> None:
    """``invalidate_tags()`` for coroutines: the same guarantee, without blocking the loop.

    Cancelling the caller stops its wait, not the invalidation: Redis still gets it, whole.
    """
    await afinish(_invalidate_flow(checked_names(tags, _OWNER)), ainvalidate_tags)  # (see afinish)


def _targets(digests: Sequence[str]) -> list[tuple[Endpoint, str, list[FunctionCache]]]:
    """Group the functions that may carry the tags by (endpoint, namespace).

    The Redis and namespace of the process settings come first, with or without functions of
    this process there: other processes' tagged functions are there (an admin tool, a worker
    that only writes, a process whose own functions use another namespace).
    """
    groups: dict[tuple[int, str], tuple[Endpoint, str, list[FunctionCache]]] = {}
    settings = _config.current()
    if settings.enabled and settings.l2:
        endpoint = _config.endpoint_for(settings)
        groups[(id(endpoint), settings.namespace)] = (endpoint, settings.namespace, [])
    for cache in _registry.all_caches():
        if cache.tags is None or not cache.tags.spec.may_carry(digests):
            continue
        where = cache.endpoint()
        if where is not None:
            group = groups.setdefault((id(where), cache.namespace), (where, cache.namespace, []))
            group[2].append(cache)
    return list(groups.values())


def _invalidate_flow(names: tuple[str, ...]) -> Flow:
    # Under every signing key the process holds (its oldest keys the tags, as key names; a
    # process that already dropped it keys them by another), or none.
    secrets = _config.current().signing_keys or (None,)
    digests = sorted({digest_of(name, secret) for name in names for secret in secrets})
    if not digests:
        return
    _drop_tagged(digests)
    refused: list[InvalidationError] = []
    try:
        for endpoint, namespace, caches in _targets(digests):
            try:
                yield from _new_tokens(endpoint, namespace, digests, caches)
            except InvalidationError as exc:
                refused.append(exc)  # the other namespaces are still told
    finally:
        # Again, as cache_invalidate() does: a call that missed L1 after the first drop may
        # have read the old tokens before they changed, and be about to keep its value in L1.
        _drop_tagged(digests)
    if refused:
        raise refused[0]


def _new_tokens(
    endpoint: Endpoint, namespace: str, digests: Sequence[str], caches: list[FunctionCache]
) -> Flow:
    """Give the tags new tokens in Redis and announce it; else have the functions cleared later."""
    keys = tuple(tag_key(namespace, digest) for digest in digests)
    for key in keys:  # (read before this changes them in Redis: gone for good, see TokenMemory)
        TOKENS.replaced(key)
    ttl_ms = max(map(_ttl_ms, caches), default=round(TAG_FLOOR * 1000))
    signer = caches[0].remote.signer if caches else _default_signer()
    channel = channel_for(namespace)
    told = (channel, announcement(TagListener(namespace, _drop_tagged, signer), channel, digests))
    op = ops.invalidate(endpoint, keys, new_token(), ttl_ms, told)
    if caches:
        if not endpoint.breaker.allow():
            _defer(endpoint, caches)
            return
        ok, reply = yield from l2_op(caches[0], endpoint, op)
        if ok:
            return
        if isinstance(reply, RemoteUnavailable):
            _defer(endpoint, caches)
            return
        raise caches[0].refusal(_OWNER, endpoint, reply)
    # No function here may carry the tags on this endpoint: tell Redis all the same (others may).
    # If it cannot be told, nothing here can replay it later: say so, by an exception where that
    # was all this call was for (no tagged function here at all), else in the log, once.
    error: RemoteError | None = None
    if endpoint.breaker.allow():
        try:
            yield op
        except RemoteError as exc:
            error = exc
            if isinstance(exc, RemoteUnavailable):
                endpoint.breaker.failure(exc)
        else:
            endpoint.breaker.success()
            return
    why = str(error) if error is not None else "unreachable"
    if any(cache.tags is not None for cache in _registry.all_caches()):
        if (endpoint.name, namespace) not in _warned:
            _warned.add((endpoint.name, namespace))
            logger.warning(
                "%s could not tell %s for namespace %r (%s): other processes there may serve "
                "entries carrying these tags until they expire",
                _OWNER,
                endpoint.name,
                namespace,
                why,
            )
        return
    raise InvalidationError(
        "tiercache",
        _OWNER,
        endpoint.name,
        why,
        "no function of this process carries these tags there, so nothing can replay it; "
        "other processes may serve entries carrying them until they expire",
    )


_warned: set[tuple[str, str]] = set()


def _defer(endpoint: Endpoint, caches: list[FunctionCache]) -> None:
    # Which entries carry the tags is known only to Redis: clear the functions that may, once
    # Redis is back (they stay off it until then).
    for cache in caches:
        defer(cache, endpoint, clear=True)


def claim_tokens(
    cache: FunctionCache, endpoint: Endpoint, keys: tuple[str, ...]
) -> Generator[Op, Any, list[bytes | None] | None]:
    """Claim a token for each tag key Redis holds none for; return what each holds (None: failed).

    What a key holds that is no token, or a token an invalidation replaced, was planted: it is
    replaced by a new one (see ``_reclaim``), for every claimant (a call's run, a cache_set).
    """
    ok, held = yield from l2_op(
        cache, endpoint, ops.claim_tokens(endpoint, keys, new_token(), _ttl_ms(cache), owner=cache)
    )
    if not ok:
        return None
    found: list[bytes | None] = list(held)
    for i, token in enumerate(found):
        if token is not None and not TOKENS.genuine(token, at=keys[i]):
            found[i] = yield from _reclaim(cache, endpoint, keys[i], token)
    return found


def _reclaim(
    cache: FunctionCache, endpoint: Endpoint, key: str, held: bytes
) -> Generator[Op, Any, bytes | None]:
    """Replace what a tag key holds by a new token (it is planted); return the new token.

    Safe as an invalidation of the tag is: a new token matches no entry written before. Left
    there, something that is not a token kept every entry carrying the tag out of L2 for good,
    with nothing said; an old token planted back brought back the entries written under it.
    """
    cache.stats.count("l2_corrupt")
    cache.log_once(
        "tag-token",
        "%s: a tag key at %s held something that is not a tag token, or one an invalidation "
        "replaced (planted?); replaced",
        cache.label,
        endpoint.name,
    )
    token = new_token()
    swap = ops.swap(endpoint, key, held or None, token, _ttl_ms(cache), owner=cache)
    ok, swapped = yield from l2_op(cache, endpoint, swap)
    return token if ok and swapped else None  # (else another claimant won: the next call reads its)


def _ttl_ms(cache: FunctionCache) -> int:
    """Return how long a tag token ``cache`` claims lives in Redis, in ms."""
    return cache.tags.ttl_ms if cache.tags is not None else round(TAG_FLOOR * 1000)


def _default_signer() -> Signer | None:
    keys = _config.current().signing_keys
    return Signer(keys) if keys else None
