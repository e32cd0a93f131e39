"""tiercache against its peers, in one process run per scenario (``python -m nox -s bench``)."""
