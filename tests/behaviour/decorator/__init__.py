"""What docs/decorator.md promises."""
