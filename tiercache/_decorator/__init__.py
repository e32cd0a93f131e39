"""The ``@tiered_cache`` front end: options, keys, the generated fast path, the routing flow.

- ``decorator``: ``tiered_cache`` itself; ``options``: its arguments, defined once.
- ``keys``, ``identity``: canonical argument bytes; what tells two factory-made functions apart.
- ``function``: one decorated function's cache (keys, flights, sampling) over its tiers.
- ``fastpath``: the generated wrapper that answers an L1 hit in one Python frame.
- ``flow``: where a call goes after L1 (L2, the function, write-back), written once.
- ``config``: process-wide defaults (``configure()``); ``registry``: every live cached function.
- ``protocols``: the types checkers see for a cached function.
"""
