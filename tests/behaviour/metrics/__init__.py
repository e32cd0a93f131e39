"""What docs/metrics.md promises."""
