"""A process that builds one getter of a factory, calls it once, and prints what it got.

``python -m tests.support.workers.closure URL NAMESPACE FACTORY TABLE ROW`` (PYTHONHASHSEED
differs per run). FACTORY: ``getter`` (its table in the closure), ``loader`` (a client, a lock and
a 2 MB constant in the closure, as an app factory holds them), ``stamped`` (a config dict holding
this process's start time).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import tiercache
from tiercache import tiered_cache

DB = {"users": {1: "alice"}, "orders": {1: "order-1"}}
RUNS: list[str] = []


def make_getter(table: str):  # type: ignore[no-untyped-def]
    @tiered_cache(ttl_l1=None, ttl_l2=600)
    def get(row_id: int) -> str:
        RUNS.append(table)
        return f"{DB[table][row_id]} (computed in pid {os.getpid()})"

    return get


class Client:
    """A database client: an object without an encoding, another one in every process."""

    def __init__(self, table: str) -> None:
        self.table = table

    def fetch(self, row_id: int) -> str:
        return DB[self.table][row_id]


def make_loader(client: Client):  # type: ignore[no-untyped-def]
    lock, blob = threading.Lock(), b"\x00" * (2 << 20)

    @tiered_cache(ttl_l1=None, ttl_l2=600)
    def load(row_id: int) -> str:
        with lock:
            RUNS.append(client.table)
            return f"{client.fetch(row_id)} (computed in pid {os.getpid()}, {len(blob)} bytes)"

    return load


def make_stamped(config: dict[str, Any]):  # type: ignore[no-untyped-def]
    @tiered_cache(ttl_l1=None, ttl_l2=600)
    def get(row_id: int) -> str:
        RUNS.append(config["table"])
        return f"{DB[config['table']][row_id]} (computed in pid {os.getpid()})"

    return get


if __name__ == "__main__":
    url, namespace, factory, table, row = sys.argv[1:]
    tiercache.configure(redis_url=url, namespace=namespace)
    if factory == "getter":
        getter = make_getter(table)
    elif factory == "loader":
        getter = make_loader(Client(table))
    else:
        getter = make_stamped({"table": table, "started": time.time()})
    print(getter(int(row)), "ran" if RUNS else "cached", flush=True)
    tiercache.close()
