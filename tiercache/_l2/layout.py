"""How tiercache names its Redis keys, in one place: each namespace is shared by three owners.

- a decorated function: ``<namespace>:<label>:<digest>``, and ``<namespace>:<label>:gen`` (its
  generation) and ``...:<digest>:lock`` (its stampede locks);
- the adapters: ``<namespace>:k:<key>``, and ``<namespace>:gen``;
- tags: ``<namespace>:tag:<digest>``;

and fleet stats write ``<namespace>:stats:<16 hex digits>`` (one per publishing process), which
no function's key can be (their digests have 32). So no function may be labelled ``k`` or
``tag``: its keys would be the adapters' or the tags'.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = [
    "ADAPTER_SEGMENT",
    "DIGEST_LENGTH",
    "RESERVED_LABELS",
    "STATS_SEGMENT",
    "TAG_SEGMENT",
    "hex_digest",
]

#: The segment after the namespace in every adapter key.
ADAPTER_SEGMENT: Final = "k"
#: The segment after the namespace in every tag key.
TAG_SEGMENT: Final = "tag"
#: The segment after the namespace in every fleet stats key (tiercache.metrics.fleet).
STATS_SEGMENT: Final = "stats"
#: Hex characters of the digest ending a function's, or a tag's, key name (and naming an
#: adapter key in announcements): what other processes know an entry by.
DIGEST_LENGTH: Final = 32
#: Function labels that would share another owner's keys, and that owner.
RESERVED_LABELS: Final = {ADAPTER_SEGMENT: "adapters", TAG_SEGMENT: "tags"}


def hex_digest(data: bytes, *, key: bytes = b"", person: bytes = b"") -> str:
    """Return the DIGEST_LENGTH hex characters (BLAKE2b) naming ``data``; keyed by ``key`` if given."""
    return hashlib.blake2b(data, digest_size=DIGEST_LENGTH // 2, key=key, person=person).hexdigest()
