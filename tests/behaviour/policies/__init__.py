"""What docs/policies.md promises."""
