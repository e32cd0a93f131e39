"""What docs/services.md promises."""
