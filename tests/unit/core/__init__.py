"""tiercache._core."""
