"""A process that builds one getter of a factory, calls it once, and prints what it got.

``python -m tests.support.workers.closure URL NAMESPACE TABLE ROW`` (PYTHONHASHSEED differs per run).
"""

from __future__ import annotations

import sys

import tiercache
from tiercache import tiered_cache

DB = {"users": {1: "alice"}, "orders": {1: "order-1"}}
RUNS: list[str] = []


def make_getter(table: str):  # type: ignore[no-untyped-def]
    @tiered_cache(ttl_l1=None, ttl_l2=600)
    def get(row_id: int) -> str:
        RUNS.append(table)
        return f"{DB[table][row_id]} (computed in pid {__import__('os').getpid()})"

    return get


if __name__ == "__main__":
    url, namespace, table, row = sys.argv[1:]
    tiercache.configure(redis_url=url, namespace=namespace)
    getter = make_getter(table)
    print(getter(int(row)), "ran" if RUNS else "cached", flush=True)
