"""What runs beside the library: the ``tiercache`` command, its demo, throwaway redis-servers.

Tools use the public API and the L2 package's keyspace operations, nothing of the core or the
front ends' internals (an import-linter contract says so).
"""
