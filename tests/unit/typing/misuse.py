"""Typed misuse: each line with an error-code comment must be reported by mypy, and nothing else."""

from __future__ import annotations

from tiercache import tiered_cache


@tiered_cache
def resolve_adapter(category: str, name: str) -> int:
    return 0


@tiered_cache
async def get_session(session_id: str) -> str:
    return session_id


class Registry:
    @tiered_cache(ignore="self")
    def resolve(self, category: str) -> str:
        return category

    @classmethod
    @tiered_cache
    def default(cls, category: str) -> str:
        return category


def misuse() -> None:
    resolve_adapter("storage")  # E: call-arg
    resolve_adapter("storage", 3)  # E: arg-type
    text: str = resolve_adapter("a", "b")  # E: assignment
    resolve_adapter.cache_invalidate(1, "b")  # E: arg-type
    Registry().resolve(1)  # E: arg-type
    Registry().resolve("a", "b")  # E: call-arg
    Registry.default(3)  # E: arg-type
    session: str = get_session("s")  # E: assignment
    resolve_adapter.cache_set("not an int", "a", "b")  # E: arg-type
    resolve_adapter.cache_get("a")  # E: call-arg
    Registry().resolve.cache_invalidate("storage", "a")  # E: call-arg
    Registry().resolve.cache_set(3, "a")  # E: arg-type
    print(text, session)
