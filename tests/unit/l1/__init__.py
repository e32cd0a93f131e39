"""tiercache._l1."""
