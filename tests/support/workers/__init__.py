"""Processes the tests start: each a ``python -m tests.support.workers.NAME`` program."""
