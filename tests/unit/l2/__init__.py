"""tiercache._l2."""
