"""Cross-process L1 coherence: changes are announced on a per-namespace Redis channel.

A process that invalidates, clears or (adapters) sets an entry publishes which L1 keys changed
on ``<namespace>:invalidations``; every other process with a cache at that key prefix drops them
from its L1. We chose plain pub/sub over server-assisted client tracking (RESP3 ``CLIENT
TRACKING ... BCAST``) because tracking announces *every* write of a key, so each process's
ordinary miss-fills would evict the entries other processes just cached; pub/sub carries only
the changes we mean. It also needs no RESP3, works the same on a Redis Cluster (classic
``PUBLISH`` reaches every node) and under fakeredis.

One listener thread per endpoint holds one subscription. Nothing guarantees delivery: whenever
the subscription is lost (Redis restarted, the connection cut, no answer to our PING within
``LOST_AFTER`` seconds), invalidations may have been missed, so every member's L1 is flushed
when the loss is noticed, and until the subscription is back (or while it cannot be made at
all: a user who may not SUBSCRIBE) what a member caches lives ``DEAF_L1_SECONDS`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final, Protocol

from tiercache._l2.announcement import Announcement, encode, parse
from tiercache._l2.errors import brief
from tiercache._l2.signing import Signer

__all__ = ["Bus", "Member", "announcement", "channel_for"]

logger = logging.getLogger("tiercache")

#: How long the listener waits for a message before looking at its other duties.
POLL: Final = 0.05
#: After this many quiet seconds the listener PINGs, to notice a server that stopped answering.
PING_AFTER: Final = 1.0
#: A PING unanswered for this long means the subscription is lost.
LOST_AFTER: Final = 1.0
#: While a member cannot follow its channel (not subscribed yet, Redis down, or a user who may
#: not SUBSCRIBE), its L1 entries live at most this long: the bound on what it can miss.
DEAF_L1_SECONDS: Final = 1.0
#: How long a cache's first use waits for its channel's subscription. Long enough for a healthy
#: Redis to answer (then nothing is cached unheard); short, because Redis may be down.
JOIN_WAIT: Final = 0.05
#: Largest announcement we read (a forged huge one is ignored, not decoded).
MAX_MESSAGE_BYTES: Final = 1 << 20


class Member(Protocol):
    """A cache whose L1 follows announcements: a decorated function or an adapter."""

    key_prefix: str
    origin: bytes

    @property
    def signer(self) -> Signer | None:
        """What signs and verifies its announcements (None: they are neither signed nor verified)."""

    def drop_local(self, keys: Sequence[Hashable] | None, *, keep_stale: bool = False) -> None:
        """Drop ``keys`` from L1 (None: everything), as if invalidated here."""

    def drop_announced(self, digests: Sequence[str]) -> None:
        """Drop the L1 entries whose Redis keys end with ``digests``, as if invalidated here."""

    def set_deaf(self, deaf: bool) -> None:
        """Bound L1 lifetimes to DEAF_L1_SECONDS while announcements cannot be heard (or lift it)."""


#: How far from this host's clock a signed announcement's time may be (either way: clocks of
#: two hosts differ) and still be obeyed: the window a replay must fit in, where Replays
#: remembers every nonce it saw.
ANNOUNCEMENT_WINDOW_MS: Final = 30_000
#: Nonces remembered at most: past this many genuine announcements within one window, the
#: oldest nonces are forgotten (and those announcements could be replayed once more).
MAX_NONCES: Final = 1 << 16


class Replays:
    """Tell a signed announcement heard for the first time, and recently sent, from a replay.

    Only what verified is remembered, so nobody without the key can fill the memory.
    """

    def __init__(self) -> None:
        self._seen: dict[bytes, int] = {}  # nonce -> when it stops mattering (ms), oldest first
        self._lock = threading.Lock()

    @staticmethod
    def timely(sent_ms: int, now_ms: int) -> bool:
        """Whether an announcement sent at ``sent_ms`` is within the window of ``now_ms``."""
        return abs(now_ms - sent_ms) <= ANNOUNCEMENT_WINDOW_MS

    def first(self, nonce: bytes, now_ms: int) -> bool:
        """Record ``nonce`` (of a verified, timely announcement); False if it was seen before."""
        with self._lock:
            seen = self._seen
            while seen:
                oldest, until = next(iter(seen.items()))
                if until > now_ms and len(seen) < MAX_NONCES:
                    break
                del seen[oldest]
            if nonce in seen:
                return False
            seen[nonce] = now_ms + 2 * ANNOUNCEMENT_WINDOW_MS
            return True


#: ``(channel, message)`` to publish after a change, or None.
Announce = tuple[str, bytes] | None


def channel_for(namespace: str) -> str:
    """Return the pub/sub channel of ``namespace``."""
    return f"{namespace}:invalidations"


def announcement(member: Member, channel: str, digests: Sequence[str] | None) -> bytes:
    """Return the message telling other processes that ``digests`` (None: all) of ``member`` changed."""
    return encode(channel, member.origin, member.key_prefix, digests, member.signer)


class Subscription(Protocol):
    """A subscription as the listener uses it (``inbox.Subscription``: redis-py's, read off its socket)."""

    def subscribe(self, channels: list[str]) -> None:
        """Subscribe to more ``channels`` (the first call connects)."""

    def ping(self) -> None:
        """Ask for a PONG."""

    def read(self, timeout: float) -> Any:
        """Return the next reply (None: none within ``timeout``); raise if the subscription is lost."""

    def close(self) -> None:
        """Unsubscribe and close."""

    def drop(self) -> None:
        """Close this process's copy of the connection (a forked child's)."""


Subscribe = Callable[[int], Subscription]  # attempt number -> a fresh subscription, not connected yet


class Bus:
    """The listener of one endpoint: its subscription, and who to tell what."""

    def __init__(self, name: str, subscribe: Subscribe, join_timeout: float = JOIN_WAIT) -> None:
        self.name = name
        self._subscribe = subscribe
        self._join_timeout = join_timeout
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # channel -> key prefix -> members
        self._members: dict[str, dict[str, weakref.WeakSet[Any]]] = {}
        # Whom _apply tells, by (channel, key prefix): weak references read off _members under
        # the lock, forgotten at every join. (Every process hears every other's announcements,
        # and iterating a WeakSet cost a third of each.)
        self._audiences: dict[tuple[str, str], tuple[weakref.ref[Any], ...]] = {}
        # Members that cannot hear announcements now (deaf: short-lived L1 entries) until their
        # channel is followed (again).
        self._unconfirmed: weakref.WeakSet[Any] = weakref.WeakSet()
        self._confirmed: set[str] = set()  # channels subscribed on the current connection
        self._failing = False  # the last attempt to subscribe failed
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._abandoned = False  # its endpoint is gone: it listens no more, ever
        # The listener's subscription while it listens: a forked child closes its copy of the
        # socket (see after_fork).
        self._subscription: Subscription | None = None
        self._replays = Replays()
        self.losses = 0  # subscriptions lost (for tests and the log)
        self._warned = False  # that we cannot follow, since the last time we could
        _buses.add(self)

    def join(self, channel: str, member: Member) -> None:
        """Have ``member`` follow announcements on ``channel``, starting to listen if need be.

        Waits (up to ``join_timeout``, and never on an event loop's thread) for the
        subscription, so that the member caches nothing it could not hear about. (Otherwise an
        announcement made within that one round trip can be missed.) With Redis down it does not
        wait: it is flushed once the subscription comes, for it may have missed any number.
        """
        with self._changed:
            self._members.setdefault(channel, {}).setdefault(member.key_prefix, weakref.WeakSet()).add(member)
            self._audiences.clear()
            if channel in self._confirmed:
                self._unconfirmed.discard(member)
                member.set_deaf(False)  # (it may have followed another channel, unheard)
                return
            if self._thread is None or not self._thread.is_alive():
                self._start()
            if not self._failing and not _in_event_loop():
                self._changed.wait_for(
                    lambda: channel in self._confirmed or self._failing, self._join_timeout
                )
            if channel not in self._confirmed:
                # Not following yet (an event loop does not wait; Redis may be down): what this
                # member caches until we are, it may not hear about, so it lives briefly.
                self._unconfirmed.add(member)
                member.set_deaf(True)

    def _start(self) -> None:
        self._stopped.clear()
        self._thread = threading.Thread(target=self._listen, name="tiercache-coherence", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        """Whether every followed channel is subscribed now."""
        with self._lock:
            return bool(self._confirmed) and set(self._members) <= self._confirmed

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop listening, waiting up to ``timeout`` s for the thread; return whether it ended.

        It ends within one poll, or once a Redis call under way returns (bounded by the socket
        timeouts). From now on announcements go unheard: every member's L1 is flushed, and what
        members cache until their channel is followed again (a join, or resume()) lives briefly.
        """
        self._stopped.set()
        with self._lock:  # (_start() assigns and starts under it: never joined before it starts)
            thread = self._thread
        ended = True
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            ended = not thread.is_alive()
        members = self._all_members()
        with self._lock:
            self._confirmed.clear()
            self._unconfirmed = weakref.WeakSet(members)
        for member in members:
            member.set_deaf(True)
            member.drop_local(None, keep_stale=True)
        return ended

    def abandon(self) -> None:
        """Stop listening without waiting: the endpoint this bus served is gone.

        Its members may live on (a function now using another endpoint): without this, the
        thread would go on listening for them, where no close() could find it (close() waits
        for it through wait_for_abandoned()).
        """
        self._abandoned = True
        self._stopped.set()

    def resume(self) -> None:
        """Listen again after stop(), if anyone follows; members hear once subscribed again."""
        with self._lock:
            if self._members and (self._thread is None or not self._thread.is_alive()):
                self._start()

    def after_fork(self) -> None:
        """In a child: no listener thread survived the fork; start a new one if anyone follows."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._thread = None
        self._confirmed = set()
        # The parent's listener is not here to close its subscription: this process's copy of
        # the socket would stay open (and the server would keep a connection of the parent's
        # open after the parent closed it, filling its buffer with messages nobody reads).
        # redis-py shuts a socket down only in the process that opened it: this just closes ours.
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                subscription.drop()
        if self._members and not self._abandoned:
            # The parent's L1 came with the fork, and what it will miss until we listen, we
            # cannot know: flush now and once the child's subscription is up.
            self._flush_all()
            self._unconfirmed = weakref.WeakSet(self._all_members())
            for member in self._unconfirmed:
                member.set_deaf(True)
            self._start()

    # -- the listener thread ------------------------------------------------------------------

    def _all_members(self) -> list[Any]:
        with self._lock:
            return [m for group in self._members.values() for members in group.values() for m in members]

    def _listen(self) -> None:
        attempt, backoff = 0, 0.05
        # Listen while anyone follows: a bus whose caches are all gone lets its thread end.
        while self._keep_listening():
            subscription = None
            try:
                subscription = self._subscription = self._subscribe(attempt)
                self._follow(subscription)
            except Exception as exc:  # any failure of the subscription means "lost"
                if self._lost(exc):
                    backoff = 0.05
                attempt += 1
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 1.0)
            else:
                continue  # stopped, or nobody follows any more
            finally:
                self._subscription = None
                if subscription is not None:
                    with contextlib.suppress(Exception):  # a dead connection may fail to close
                        subscription.close()

    def _keep_listening(self) -> bool:
        # Decided under the lock join() starts threads under: a cache joining now either sees
        # this thread still listening, or sees it gone and starts another.
        with self._lock:
            followed = any(len(members) for group in self._members.values() for members in group.values())
            if followed and not self._stopped.is_set():
                return True
            if self._thread is threading.current_thread():
                self._thread = None
                self._confirmed.clear()  # nothing is subscribed once this thread is gone
            return False

    def _lost(self, exc: Exception) -> bool:
        """Stop trusting L1s after a failed subscription; return whether one was up until now."""
        with self._changed:
            was_up = bool(self._confirmed)
            self._confirmed.clear()
            self._failing = True
            self._changed.notify_all()
        # Announcements may be missed from now until we follow again: nothing cached before the
        # loss is trusted, nor anything cached until the subscription is back.
        members = self._all_members()
        with self._lock:
            self._unconfirmed = weakref.WeakSet(members)
            warn = not self._warned
            self._warned = True
        for member in members:
            member.set_deaf(True)
        if was_up:
            for member in members:
                member.drop_local(None, keep_stale=True)
            # Counted (and said) once the L1s are flushed: whoever sees the loss sees it handled.
            self.losses += 1
            logger.warning(
                "tiercache: lost the invalidation channel of %s (%s); L1 flushed, reconnecting",
                self.name,
                brief(exc),
            )
        elif warn:
            logger.warning(
                "tiercache: cannot follow the invalidation channel of %s (%s); until it can, L1 "
                "entries of coherent functions live at most %g s",
                self.name,
                brief(exc),
                DEAF_L1_SECONDS,
            )
        return was_up

    def _follow(self, subscription: Subscription) -> None:
        """Subscribe and dispatch until stopped; raise when the subscription is lost."""
        with self._lock:
            subscribed = set(self._members)
        if not subscribed:
            return  # (nobody follows any more)
        subscription.subscribe(sorted(subscribed))
        last_heard = time.monotonic()
        ping_sent: float | None = None
        while not self._stopped.is_set():
            if ping_sent is not None and not self._all_members():
                return  # (looked at once per quiet PING_AFTER, not on every poll)
            if len(self._members) != len(subscribed):  # (channels are only ever added)
                with self._lock:
                    wanted = set(self._members) - subscribed
                subscription.subscribe(sorted(wanted))
                subscribed |= wanted
            reply = subscription.read(POLL)
            now = time.monotonic()
            if reply is not None:
                last_heard, ping_sent = now, None
                self._dispatch(reply)
            elif ping_sent is not None:
                if now - ping_sent > LOST_AFTER:
                    raise TimeoutError(f"no answer to PING within {LOST_AFTER}s")
            elif now - last_heard > PING_AFTER:
                subscription.ping()
                ping_sent = now

    def _dispatch(self, reply: Any) -> None:
        """Act on one reply of the subscription: ``[kind, channel, data]`` (else a PONG)."""
        if not isinstance(reply, list) or len(reply) != 3:  # (hiredis: RESP3 pushes are a list subclass)
            return
        kind, channel, data = reply
        if kind == b"subscribe":
            self._confirm(_text(channel))
        elif kind == b"message":
            self._apply(_text(channel), data)

    def _confirm(self, channel: str) -> None:
        with self._changed:
            self._confirmed.add(channel)
            self._failing = False
            self._warned = False
            members = [m for group in self._members.get(channel, {}).values() for m in group]
            stale = [m for m in members if m in self._unconfirmed]
            for member in stale:
                self._unconfirmed.discard(member)
            self._changed.notify_all()
        for member in stale:
            member.set_deaf(False)  # what it cached while deaf lives DEAF_L1_SECONDS at most
        logger.debug("tiercache: following %s on %s", channel, self.name)

    def _apply(self, channel: str, data: Any) -> None:
        # Anyone who can publish can send anything: only a well-formed announcement does anything,
        # and the worst a forged one can do is drop entries (a miss), never plant them. With
        # signing, not even that: a member that signs ignores what it cannot verify.
        if not isinstance(data, bytes) or len(data) > MAX_MESSAGE_BYTES:
            return
        message = parse(data)
        if message is None:
            return
        audience = self._audiences.get((channel, message.key_prefix))
        if audience is None:
            audience = self._audience(channel, message.key_prefix)
        first_heard: bool | None = None  # (asked once, when a signing member first verifies it)
        for reference in audience:
            member = reference()
            if member is None or member.origin == message.origin:
                continue  # gone, or our own change: already applied here
            if member.signer is not None:
                # A genuine announcement replayed is refused as a forged one is: sent too long
                # ago (or too far ahead), or its nonce heard before.
                if not self._verified(channel, data, message, member.signer):
                    continue
                if first_heard is None:
                    first_heard = self._replays.first(message.nonce, time.time_ns() // 1_000_000)
                if not first_heard:
                    continue
            if message.digests is None:
                member.drop_local(None)
            else:
                member.drop_announced(message.digests)

    def _audience(self, channel: str, key_prefix: str) -> tuple[weakref.ref[Any], ...]:
        """Return (and remember) who follows ``key_prefix`` on ``channel``.

        Taken and stored under the lock a join adds members under, so a join either comes
        first (and is in it) or forgets it. A prefix nobody follows is not remembered: anyone
        who can publish can name any number of them.
        """
        with self._lock:
            group = self._members.get(channel, {})
            if key_prefix not in group:
                return ()
            audience = self._audiences[channel, key_prefix] = tuple(weakref.ref(m) for m in group[key_prefix])
        return audience

    @staticmethod
    def _verified(channel: str, data: bytes, message: Announcement, signer: Signer) -> bool:
        """Whether ``message`` is signed by ``signer``'s keys, with a nonce, and sent lately."""
        now_ms = time.time_ns() // 1_000_000
        return (
            message.signed
            and bool(message.nonce)
            and Replays.timely(message.sent_ms, now_ms)
            and signer.verify(channel, data)
        )

    def _flush_all(self) -> None:
        for member in self._all_members():
            member.drop_local(None, keep_stale=True)


_buses: weakref.WeakSet[Bus] = weakref.WeakSet()


def wait_for_abandoned(timeout: float) -> int:
    """Wait up to ``timeout`` s for each listener whose endpoint is gone; return how many still run.

    Each ends within one poll (50 ms), unless a Redis call holds it.
    """
    threads = [bus._thread for bus in list(_buses) if bus._abandoned]
    running = 0
    for thread in threads:
        if thread is not None:
            thread.join(timeout)
            running += thread.is_alive()
    return running


def _after_fork_in_child() -> None:
    for bus in list(_buses):
        bus.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _text(value: Any) -> str:
    # (a name that is not UTF-8 is no channel of ours: it matches none, and raises nothing)
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _in_event_loop() -> bool:
    # An event loop must not block on a join: it would stall every task of the loop.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
