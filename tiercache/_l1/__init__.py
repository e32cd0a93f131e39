"""L1, the in-process tier: a dict in least-recently-used order with per-entry expiry.

Imports nothing else of tiercache. ``lru.LocalCache`` is what the tiers use; ``admission``
is its optional TinyLFU doorkeeper.
"""
