"""tiercache's tests, by kind (CONTRIBUTING.md says which to run when).

- ``unit/``: one module per module of the package, its folders mirroring ``tiercache/``.
- ``behaviour/``: what the documentation promises, one folder per page of ``docs/``.
- ``environments/``: real Cluster and Sentinel deployments, a Redis killed or stalled, load.
- ``support/``: the only helpers test modules share (no test module imports another).
- ``fuzz/``: coverage-guided fuzzing, run by hand.
"""
