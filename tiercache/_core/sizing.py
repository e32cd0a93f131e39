"""What an L1 entry weighs against ``max_bytes``: its key, and its value as L2 would encode it."""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import Any, Final

from tiercache._l2.codec import UnencodableError, encode_value

__all__ = ["ENTRY_OVERHEAD", "MAX_SIZED_OBJECTS", "deep_size", "entry_size"]

#: What an L1 entry costs besides its key and value (the map's slot, the tuple, the expiry).
ENTRY_OVERHEAD: Final = 150


def entry_size(key: Hashable, value: Any) -> int:
    """Return what an L1 entry weighs for ``max_bytes``: its key's bytes and its value's encoding.

    A value L2 cannot hold has no encoding: it weighs what its objects do (``deep_size``).
    """
    try:
        value_size = len(encode_value(value))
    except UnencodableError:
        value_size = deep_size(value)
    return _key_size(key, 0) + value_size + ENTRY_OVERHEAD


#: Objects ``deep_size`` walks at most; a value with more weighs more than any bound.
MAX_SIZED_OBJECTS: Final = 100_000


def deep_size(value: Any) -> int:
    """Return the bytes of ``value`` and of the objects it holds (containers, instances' fields).

    sys.getsizeof of a list is its array of pointers: 300 values of 1 MiB each, in lists with an
    object L2 cannot hold, weighed 72 bytes apiece under max_bytes=1 MiB (301 MB kept).
    """
    seen: set[int] = set()
    stack = [value]
    total = 0
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > MAX_SIZED_OBJECTS:
            return sys.maxsize
        total += sys.getsizeof(node)
        if isinstance(node, (str, bytes, bytearray, int, float, complex, bool, type(None))):
            continue
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend(node)
        else:
            fields = getattr(node, "__dict__", None)
            if isinstance(fields, dict):
                stack.append(fields)
            slots = getattr(type(node), "__slots__", ())
            stack.extend(
                getattr(node, name) for name in slots if isinstance(name, str) and hasattr(node, name)
            )
    return total


def _key_size(part: Any, depth: int) -> int:
    # A key's str and bytes by their length, anything else 8; into the containers of a shallow
    # key (see shallow_key: a tuple of (type, items) pairs), three levels down at most.
    if isinstance(part, (str, bytes)):
        return len(part)
    if depth < 3 and isinstance(part, (tuple, frozenset)):
        return sum(_key_size(item, depth + 1) for item in part) + 8
    return 8
