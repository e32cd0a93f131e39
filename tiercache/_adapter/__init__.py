"""The design note's cache adapter (``MultiTierCacheAdapter``): get/set/delete/clear by hand.

- ``adapter``: the sync and async adapters; ``settings``: their fields, defaults, environment.
- ``tiers``: an adapter's cache state; ``flows``: what get/set/delete/clear do over it, written
  once for both adapters.
"""
