"""Run every Python example in docs/*.md (Sybil) against a redis-server started for the docs.

Each page starts from fresh settings, a namespace of its own, and ``TIERCACHE_REDIS_URL``
pointing at that server, so examples read the way users write them.
"""

from __future__ import annotations

import atexit
import gc
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

from tiercache._decorator import config as _config
from tiercache._tools.redis_process import RedisProcess

_server: RedisProcess | None = None


def _redis_url() -> str:
    global _server
    if _server is None:
        _server = RedisProcess(Path(tempfile.mkdtemp(prefix="tiercache-docs-"))).start()
        atexit.register(_server.stop)
    return _server.url


def _setup(namespace: dict[str, Any]) -> None:
    namespace["__name__"] = "docs_example"  # functions defined in examples need a module name
    namespace["_saved_environ"] = dict(os.environ)
    os.environ["TIERCACHE_REDIS_URL"] = _redis_url()
    os.environ["TIERCACHE_NAMESPACE"] = f"docs-{uuid.uuid4().hex[:8]}"
    _config.reset()


def _teardown(namespace: dict[str, Any]) -> None:
    os.environ.clear()
    os.environ.update(namespace["_saved_environ"])
    _config.reset()
    # A page's functions die with it: pages share a module name, and a twin left alive by a page
    # run earlier in the same worker would be the one tiercache.stats() names without "#2".
    namespace.clear()
    gc.collect()


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["*.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()
