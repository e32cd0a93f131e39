"""A preloading parent whose adapter its forked workers go on using.

``python -m tests.support.workers.forked_adapter URL NAMESPACE``: the parent builds a
``MultiTierCache`` and fills it, as a gunicorn ``--preload`` app (or a Django settings module
that touched its cache) would, then forks two workers. Both read ``k`` and ``j`` into their L1s;
the first deletes ``k`` and sets ``j``; the second serves both until it sees the change (or
two seconds pass). One JSON line: what the second served before and after.
"""

from __future__ import annotations

import json
import os
import sys
import time

from tiercache import MultiTierCache, MultiTierCacheSettings


def main(url: str, namespace: str) -> None:
    """Fork two workers over one adapter; print what the second saw of the first's changes."""
    cache = MultiTierCache(MultiTierCacheSettings(l2_url=url, namespace=namespace, l1_ttl_seconds=600))
    cache.set("k", "old")
    cache.set("j", "old")
    read_first, tell_first = os.pipe()
    read_second, tell_second = os.pipe()
    report_read, report_write = os.pipe()
    first = os.fork()
    if first == 0:
        try:
            os.read(read_first, 1)  # the second worker holds both in its L1
            cache.delete("k")
            cache.set("j", "new")
            os.write(tell_second, b"x")
        finally:
            os._exit(0)
    second = os.fork()
    if second == 0:
        try:
            before = [cache.get("k"), cache.get("j")]
            os.write(tell_first, b"x")
            os.read(read_second, 1)
            deadline = time.monotonic() + 2.0
            while [cache.get("k"), cache.get("j")] != [None, "new"] and time.monotonic() < deadline:
                time.sleep(0.005)
            after = [cache.get("k"), cache.get("j")]
            os.write(report_write, json.dumps({"before": before, "after": after}).encode())
        finally:
            os._exit(0)
    os.close(report_write)
    report = os.read(report_read, 4096)
    for pid in (first, second):
        os.waitpid(pid, 0)
    print(report.decode(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
