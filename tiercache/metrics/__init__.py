"""Metrics export: ``tiercache.metrics.prometheus`` and ``tiercache.metrics.otel`` (optional extras)."""
