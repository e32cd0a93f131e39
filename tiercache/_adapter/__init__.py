"""The design note's cache adapter (``MultiTierCacheAdapter``): get/set/delete/clear by hand.

- ``adapter``: the sync and async adapters; ``settings``: their fields, defaults, environment.
- ``flows``: what get/set/delete/clear do over the tiers, written once for both.
"""
