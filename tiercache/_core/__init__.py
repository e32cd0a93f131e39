"""The routing core: what both front ends share, and no Redis client.

- ``ops``: the I/O a flow can ask for (each performs itself on a store, sync or async).
- ``shells``: the two loops that drive a flow, one blocking, one awaiting.
- ``flights``: single flight (concurrent misses on one key share one run).
- ``tiers``: one cache's L1, L2 endpoint, generation, repairs and stats.
- ``stats``: counters, latency histogram, the frozen snapshot users read.
- ``checks``: the argument and environment checks both front ends use.
- ``closing``: the last try at deferred invalidations when closing, and the report of what is left.
- ``tracing``: OpenTelemetry spans for L2 operations and computations, when the application traces.
"""
