"""L2, the shared tier: everything that knows Redis, its bytes and its channel.

Imports no front end (decorator, adapter) and no routing: the core drives it through the
stores' small command surface.

- ``urls``, ``errors``: what a Redis location is, and the errors every L2 failure becomes.
- ``endpoint``: one Redis deployment (standalone or cluster), its clients and breaker.
- ``stores``: the commands the tiers send, as sync and async twins; ``scripts``: their Lua.
- ``pool``, ``breaker``: connections for coroutines; when to stop trying a sick server.
- ``codec``, ``envelope``, ``signing``: a value's bytes, the header around them, the MAC.
- ``coherence``, ``announcement``: invalidations announced to other processes' L1s.
- ``keyspace``: what ``tiercache stats``/``flush`` do to a namespace's keys.
"""
