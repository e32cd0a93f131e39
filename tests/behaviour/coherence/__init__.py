"""What docs/coherence.md promises."""
