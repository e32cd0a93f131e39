"""What docs/cli.md promises."""
