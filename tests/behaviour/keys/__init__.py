"""What docs/keys.md promises."""
