"""What docs/resilience.md promises."""
