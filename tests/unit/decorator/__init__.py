"""tiercache._decorator."""
