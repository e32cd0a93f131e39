"""How tiercache names its Redis keys, in one place: each namespace is shared by three owners.

- a decorated function: ``<namespace>:<label>:<digest>``, and ``<namespace>:<label>:gen`` (its
  generation) and ``...:<digest>:lock`` (its stampede locks);
- the adapters: ``<namespace>:k:<key>``, and ``<namespace>:gen``;
- tags: ``<namespace>:tag:<digest>``.

So no function may be labelled ``k`` or ``tag``: its keys would be the adapters' or the tags'.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ADAPTER_SEGMENT", "RESERVED_LABELS", "TAG_SEGMENT"]

#: The segment after the namespace in every adapter key.
ADAPTER_SEGMENT: Final = "k"
#: The segment after the namespace in every tag key.
TAG_SEGMENT: Final = "tag"
#: Function labels that would share another owner's keys, and that owner.
RESERVED_LABELS: Final = {ADAPTER_SEGMENT: "adapters", TAG_SEGMENT: "tags"}
