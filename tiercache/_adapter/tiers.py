"""An adapter's cache state: its two tiers, its keys in Redis, its counters (``flows`` use it)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from tiercache._adapter.settings import MultiTierCacheSettings
from tiercache._core.tiers import Tiers
from tiercache._l1.lru import Clock, LocalCache
from tiercache._l2.deployments import Endpoint, endpoint_for_url
from tiercache._l2.layout import ADAPTER_SEGMENT, hex_digest
from tiercache._l2.signing import Signer, signing_keys

__all__ = ["AdapterTiers"]


class AdapterTiers(Tiers):
    """An adapter's tiers: its own L1, and its own connections to its Redis."""

    def __init__(self, settings: MultiTierCacheSettings, label: str, clock: Clock) -> None:
        local = LocalCache(
            settings.l1_max_entries if settings.l1_enabled else 0,
            settings.l1_ttl_seconds,
            clock,
            policy=settings.l1_policy,
        )
        ttl_l2 = settings.l2_ttl_seconds if settings.l2_enabled else None
        super().__init__(label, local, ttl_l2=ttl_l2, stale_ttl=0.0, tombstones=False)
        self.settings = settings
        self.namespace = settings.namespace
        self.generation_key = f"{settings.namespace}:gen"
        self.sets = 0
        self.deletes = 0
        self._endpoint = (
            endpoint_for_url(
                settings.redis_url(),
                timeout=settings.l2_timeout,
                connect_timeout=settings.l2_connect_timeout,
                tls=settings.tls_options(),
                max_connections=settings.l2_max_connections,
            )
            if settings.l2_enabled
            else None
        )
        keys = signing_keys(settings.signing_key, label) if settings.signing_key else ()
        self.remote.pickles = settings.pickle_signed_values  # (set_payload_rules keeps it to signing caches)
        self.remote.set_payload_rules(
            Signer(keys) if keys else None, settings.max_value_bytes, settings.compress_min_bytes
        )
        remote = self.remote  # (not self: see Tiers)

        def digest_for(redis_key: str) -> str:
            # Keyed when signing: adapter keys are the user's own, often guessable.
            secret = remote.signer.naming_secret if remote.signer is not None else b""
            return hex_digest(redis_key.encode(), key=secret)

        self.coherence.digest_for = digest_for
        self.coherence.key_prefix = settings.namespace
        self.coherence.coherent = settings.coherent
        self.coherence.follow(self._endpoint, settings.namespace)

    def endpoint(self) -> Endpoint | None:
        """Return this adapter's L2 endpoint, or None with L2 off."""
        return self._endpoint

    def key(self, key: str) -> str:
        """Return the Redis key of the adapter key ``key``."""
        return f"{self.namespace}:{ADAPTER_SEGMENT}:{key}"

    def note(self, keys: Iterable[str]) -> None:
        """Note the digests of ``keys``, which Redis is about to be asked about, for announcements.

        Before, not after: another process's delete or set of a key, announced between the
        moment Redis answers us and the moment we keep the answer in L1, must find the key
        noted, or its announcement drops nothing and the value it replaced stays in our L1 for
        its TTL. Found, it drops the key, and the lease taken before the read refuses our L1
        write (see L1Coherence.note_digest).
        """
        coherence = self.coherence
        if coherence.channel is not None:
            for key in keys:
                coherence.note_digest(coherence.digest_for(self.key(key)), key)

    def record(self, started_ns: int, outcome: str) -> None:
        """Record one get's outcome and latency (unless metrics are off)."""
        if self.settings.enable_metrics:
            self.stats.record_call(outcome, time.perf_counter_ns() - started_ns)

    def metrics(self) -> dict[str, Any]:
        """Return the design note's metrics, with the decorator's rate definitions."""
        stats = self.snapshot()
        return {
            "gets": stats.calls,
            "sets": self.sets,
            "deletes": self.deletes,
            "l1_hits": stats.l1_hits,
            "l2_hits": stats.l2_hits,
            "misses": stats.misses,
            "l1_hit_rate": stats.l1_hit_rate,
            "l2_hit_rate": stats.l2_hit_rate,
            "combined_hit_rate": stats.combined_hit_rate,
            "avg_latency_ms": stats.avg_latency_ms,
            "p50_latency_ms": stats.p50_ms,
            "p99_latency_ms": stats.p99_ms,
            "l1_size": stats.l1_size,
            "l1_max_entries": self.local.max_entries,
            "l2_lookups": stats.l2_lookups,
            "l2_errors": stats.l2_errors,
            "l2_saturated": stats.l2_saturated,
            "l2_corrupt": stats.l2_corrupt,
            "unencodable": stats.unencodable,
            "oversized": stats.oversized,
            "l2_rejected": stats.l2_rejected,
            "degraded": stats.degraded,
            "degraded_seconds": stats.degraded_seconds,
            "pending_invalidations": stats.pending_invalidations,
        }

    def reset_metrics(self) -> None:
        """Start every counter again from zero."""
        self.snapshot(reset=True)
        self.sets = self.deletes = 0

    def forget_local(self) -> None:
        """Empty L1 and zero every counter, sets and deletes too (see Tiers.forget_local)."""
        super().forget_local()
        self.sets = self.deletes = 0
