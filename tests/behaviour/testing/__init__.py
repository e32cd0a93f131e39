"""What docs/testing.md promises."""
