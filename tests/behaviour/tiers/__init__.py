"""What docs/tiers.md promises."""
