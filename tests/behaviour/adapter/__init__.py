"""What docs/adapter.md promises."""
