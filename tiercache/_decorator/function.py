"""What one decorated function's cache adds to its tiers: its options, keys, flights, tags, TTLs.

The flows in ``flow`` decide; this object answers their questions (what is the key, where is
L2 for this function now) and holds the parts those answers come from: a ``KeyMaker`` (its
name in Redis and its calls' keys), ``FlightTables``, ``FunctionTags`` (None without
``tags=``), ``ResultLifetimes`` and ``Refreshes``, beside the tiers' own (see ``_core.tiers``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Final

from tiercache._core.flights import FlightTables
from tiercache._core.sizing import entry_size
from tiercache._core.stats import ERROR
from tiercache._core.tiers import Tiers
from tiercache._decorator import config as _config
from tiercache._decorator.call import Call
from tiercache._decorator.function_tags import FunctionTags
from tiercache._decorator.identity import Closure, identity_of
from tiercache._decorator.key_maker import KeyMaker
from tiercache._decorator.lifetimes import ResultLifetimes
from tiercache._decorator.options import Options
from tiercache._decorator.refreshes import Refreshes
from tiercache._decorator.tag_names import TagSpec
from tiercache._l1.lru import Clock, LocalCache
from tiercache._l2.deployments import Endpoint
from tiercache._l2.layout import DIGEST_LENGTH
from tiercache._l2.signing import Signer

__all__ = ["FunctionCache"]

#: With no L1, how long a finished run's result answers callers whose L2 read raced its write.
LINGER: Final = 0.1


class FunctionCache(Tiers):
    """The cache state of one decorated function, shared by its sync or async shell."""

    def __init__(
        self,
        function: Callable[..., Any],
        options: Options,
        *,
        name: str,
        key_names: tuple[str, ...],
        clock: Clock,
        closure: Closure | Callable[[], Closure] | None = None,
    ) -> None:
        ttl_l1, ttl_l2 = options.ttl_l1, options.ttl_l2
        local = LocalCache(
            options.max_entries if ttl_l1 is not None else 0,
            # A TTL that is a function of the result bounds nothing itself: each write says.
            math.inf if callable(ttl_l1) else (ttl_l1 or 0.0),
            clock,
            options.stale_ttl or 0.0,
            options.l1_policy,
            max_bytes=options.max_bytes,
            sizer=entry_size,
            ahead=options.refresh_ahead or 0.0,
        )
        label = name if options.version is None else f"{name}@{options.version}"
        super().__init__(
            label,
            local,
            ttl_l2=None if callable(ttl_l2) else ttl_l2,
            stale_ttl=options.stale_ttl or 0.0,
            tagged=options.tags is not None,
        )
        self.function = function
        self.name = name
        #: The namespace its keys are in (its own, or the configured one).
        self.namespace = ""
        #: The options as checked, read where needed (never copied under other names).
        self.options = options
        self.uses_l2 = ttl_l2 is not None
        #: How long each value is kept in each tier, as its function's TTLs and results decide.
        self.lifetimes = ResultLifetimes(label, options, self.stats, self.l2_ttl_ms)
        self.lock_ttl_ms = round(options.lock * 1000) if options.lock else 0
        self.coherence.coherent = options.coherent
        #: How its calls are named, in L1 and in Redis.
        self.keys = KeyMaker(name, key_names, self._resolve)
        self._identify(closure or Closure())
        # Resolved from the process settings, again whenever they change.
        self._resolved = -1
        #: What of the settings it last resolved decided its Redis, channel and key names.
        self.routed: tuple[Any, ...] | None = None
        self._enabled = options.enabled
        self._endpoint: Endpoint | None = None
        self.generation_key = ""
        # Single flights: one table for threads, one per event loop for coroutines. Without an L1
        # to catch a run that just ended, its result lingers briefly in the table instead.
        linger = 0.0 if self.has_l1 else LINGER
        self.flights = FlightTables(self.label, linger=linger, clock=self.clocks.monotonic)
        self.coherence.detach = self.flights.detach  # a dropped key's run is joined no more
        #: Its tags (None: no ``tags=``): which a call carries, and what was noted under each.
        self.tags = (
            FunctionTags(TagSpec(options.tags, label), local, self.coherence, self.flights, self.l2_ttl_ms)
            if options.tags is not None
            else None
        )
        self.refreshes = Refreshes()

    @classmethod
    def of(
        cls,
        function: Callable[..., Any],
        options: Options,
        *,
        label: str,
        name: str,
        key_names: tuple[str, ...],
    ) -> FunctionCache:
        """Return the cache of ``function``, told apart from its factory's others (see identity)."""
        closure = identity_of(
            function, label, shared=options.ttl_l2 is not None, named=options.name is not None
        )
        clock = options.clock or time.monotonic
        return cls(function, options, name=name, key_names=key_names, clock=clock, closure=closure)

    def _identify(self, closure: Closure | Callable[[], Closure]) -> None:
        """Name this function in Redis (see KeyMaker.identify), and warn of what looks per-process."""
        self.keys.identify(self.label, closure)
        for looks in self.keys.closure.per_process:
            self.log_once(
                f"per-process:{looks[:40]}",
                "%s: its free variable %s, which looks like this process's own: it is part of the "
                "function's identity, so processes that captured another value share none of its "
                "entries, nor hear each other's invalidations. If that is not meant, pass it as an "
                "argument, or give the function name= (see cache_parameters()['free_variables'])",
                self.label,
                looks,
            )

    def after_fork(self) -> None:
        """Start the child of a fork() clean: no parent thread will settle a flight or free a lock."""
        super().after_fork()
        self.refreshes = Refreshes()
        if self.tags is not None:
            self.tags.after_fork()
        self.flights.after_fork()

    # -- settings -------------------------------------------------------------------------

    def _resolve(self) -> None:
        if self.keys.pending_closure is not None:
            self._identify(self.keys.pending_closure())
        settings = _config.current()
        options = self.options
        namespace = options.namespace if options.namespace is not None else settings.namespace
        key_prefix = self.coherence.key_prefix = f"{namespace}:{self.keys.label}"
        if self.generation_key != f"{key_prefix}:gen":
            self.remote.forget_generation()  # another namespace: another generation, known only once read
        self.generation_key = f"{key_prefix}:gen"
        self.namespace = namespace
        self._enabled = options.enabled and settings.enabled
        use_l2 = self.uses_l2 and settings.l2
        self._endpoint = _config.endpoint_for(settings, options.redis_url) if use_l2 else None
        self.coherence.follow(self._endpoint, namespace)
        keys = options.signing_key if options.signing_key is not None else settings.signing_keys
        signer = Signer(keys) if keys else None
        size = options.max_value_bytes if options.max_value_bytes is not None else settings.max_value_bytes
        self.remote.set_payload_rules(signer, size, settings.compress_min_bytes)
        # With signing keys, digests are keyed too: low-entropy ids cannot be guessed from names.
        self.keys.settle(key_prefix, settings.max_key_bytes, signer.naming_secret if signer else None)
        if self.tags is not None:
            secret = settings.signing_keys[-1] if settings.signing_keys else None
            self.tags.settle(namespace, secret, self._endpoint, signer)
        self.routed = _config.routing_of(settings)
        self._resolved = _config.settings_version

    def route(self) -> tuple[bool, Endpoint | None]:
        """Return whether caching is on, and the L2 endpoint to use now (None: L1 only)."""
        if self._resolved != _config.settings_version:
            self._resolve()
        return self._enabled, self._endpoint

    def enabled(self) -> bool:
        """Whether caching is on for this function (its own flag and the process setting)."""
        return self.route()[0]

    def endpoint(self) -> Endpoint | None:
        """Return the L2 endpoint this function uses now, or None when it keeps to L1."""
        return self.route()[1]

    # -- keys (made by self.keys: see key_maker) -------------------------------------------

    def redis_key(self, call: Call) -> str:
        """Return the Redis key of ``call``, encoding and hashing its arguments at most once.

        Keys are remembered by L1 key (a faithful stand-in: equal L1 keys have equal canonical
        encodings), so a miss or an L1-less function skips encoding and BLAKE2b next time.
        Call it after ``route()``, which resolved the settings the key is made from.
        """
        keys = self.keys
        key = keys.memo.get(call.l1_key)
        if key is None:
            if call.canonical is None:
                call.canonical = keys.canonical(call.key_values)
            key = keys.remember(call.l1_key, call.canonical)
        if self.has_l1 and self.coherence.channel is not None:  # announcements will name it by its digest
            self.coherence.note_digest(key[-DIGEST_LENGTH:], call.l1_key)
        return key

    def read_of(self, call: Call) -> tuple[str, str, int]:
        """Return what an L2 read of ``call`` needs: its key, the generation's key, the generation now.

        Every read fetches the generation with the entry (see Remote.take_read): a clear is final
        for every process's next read, heard of or not. The generation returned is the one the
        read is made in: a clear landing from now on makes the value computed from it a miss.
        """
        key = self.keys.memo.get(call.l1_key)  # (redis_key()'s memo, read here: one frame less)
        if key is None or (self.has_l1 and self.coherence.channel is not None):
            key = self.redis_key(call)
        return key, self.generation_key, self.remote.generation or 0

    def lock_key(self, call: Call) -> str:
        """Return the Redis key of the cross-process lock for ``call``'s entry."""
        return self.redis_key(call) + ":lock"

    # -- outcomes -------------------------------------------------------------------------

    def record(self, call: Call, outcome: str, *, error: bool = False) -> None:
        """Record how ``call`` ended and how long it took."""
        flags = (call.flags | ERROR) if error else call.flags
        self.stats.add(outcome, time.perf_counter_ns() - call.started_ns, 1, flags)
