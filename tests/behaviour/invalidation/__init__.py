"""What docs/invalidation.md promises."""
