"""The key maker alone: keys from settled parts, settled again when the settings change."""

from __future__ import annotations

import gc
import weakref

import pytest

from tiercache._decorator import config
from tiercache._decorator.key_maker import REDIS_KEY_MEMO, KeyMaker
from tiercache._decorator.keys import UnkeyableArgumentError


class Owner:
    """Stands for the function cache: settles its key maker when asked to resolve."""

    def __init__(self, prefix: str = "ns:f", max_bytes: int = 1024, secret: bytes | None = None) -> None:
        self.resolved = 0
        self.parts = (prefix, max_bytes, secret)
        self.keys = KeyMaker("f", ("a",), self.resolve)
        self.keys.digest_prefix = b"1|f|a|"

    def resolve(self) -> None:
        self.resolved += 1
        self.keys.settle(*self.parts)


def test_a_key_is_made_from_the_settled_parts_and_asks_for_them_first() -> None:
    owner = Owner()
    key = owner.keys.redis_key_for(({"x": 1},))
    assert owner.resolved == 1
    assert key.startswith("ns:f:") and key == owner.keys.named(owner.keys.canonical(({"x": 1},)))
    owner.keys.redis_key_for(({"x": 1},))
    assert owner.resolved == 1  # (settled: not asked again)


def test_settings_changed_since_are_resolved_before_the_next_key() -> None:
    owner = Owner()
    owner.keys.remember("k", owner.keys.canonical(("k",)))
    before = owner.keys.redis_key_for(("k",))
    owner.parts = ("other:f", 1024, b"secret")
    config.configure(namespace="other")  # (any change bumps the settings version)
    after = owner.keys.redis_key_for(("k",))
    assert owner.resolved == 2 and after.startswith("other:f:") and after != before
    assert owner.keys.memo == {}  # (a settle forgets the keys made under the old parts)


def test_the_bound_is_the_settled_one_and_the_error_names_the_argument() -> None:
    owner = Owner(max_bytes=16)
    owner.keys.check_raw(("x" * 16,))
    with pytest.raises(UnkeyableArgumentError, match="argument 'a'"):
        owner.keys.check_raw(("x" * 17,))


def test_the_memo_is_bounded() -> None:
    owner = Owner()
    canonical = owner.keys.canonical(("k",))
    for n in range(REDIS_KEY_MEMO):
        owner.keys.remember(n, canonical)
    assert len(owner.keys.memo) == REDIS_KEY_MEMO
    owner.keys.remember("one more", canonical)
    assert owner.keys.memo == {"one more": owner.keys.named(canonical)}


def test_the_key_maker_does_not_keep_its_cache_alive() -> None:
    owner = Owner()
    keys = owner.keys
    gone = weakref.ref(owner)
    gc.disable()  # (freed by reference counting: no cycle through the resolver)
    try:
        del owner
        assert gone() is None
    finally:
        gc.enable()
    config.configure(namespace="after-the-owner")  # (the autouse fixture puts them back)
    assert keys.canonical(("k",))  # (nobody left to ask: the parts stay as they were)


def test_a_key_made_from_the_old_parts_while_they_change_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The interleaving forced: another thread settles new parts (configure(namespace=) landing)
    # between this thread taking the memo and reading the prefix to name the key.
    owner = Owner()
    canonical = owner.keys.canonical(("k",))
    named = KeyMaker.named

    def settled_meanwhile(self: KeyMaker, encoded: bytes) -> str:
        key = named(self, encoded)  # (made from the old parts)
        monkeypatch.setattr(KeyMaker, "named", named)
        owner.parts = ("new:f", 1024, None)
        owner.resolve()
        return key

    monkeypatch.setattr(KeyMaker, "named", settled_meanwhile)
    old = owner.keys.remember("k", canonical)
    assert old.startswith("ns:f:")
    assert "k" not in owner.keys.memo  # (it went into the memo the settle replaced)
    assert owner.keys.redis_key_for(("k",)).startswith("new:f:")
