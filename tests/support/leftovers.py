"""What a close may leave behind in this process: tiercache's threads, TCP sockets (read in /proc).

Counting the server's clients instead would count other tests' connections too, which close in
their own time.
"""

from __future__ import annotations

import os
import threading


def tiercache_threads() -> list[str]:
    """Return the names of tiercache's threads alive now."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("tiercache"))


def tcp_sockets() -> list[tuple[int, int, str]]:
    """Return ``(local port, remote port, state)`` of every TCP socket this process has open.

    The state is the kernel's, in hex: ``01`` is ESTABLISHED.
    """
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # (the listing's own descriptor, or one closed meanwhile)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[9] in inodes:
                    local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
                    found.append((local, remote, fields[3]))
    return found


def connections_to(port: int) -> set[int]:
    """Return the local ports of this process's established TCP connections to ``port``."""
    return {local for local, remote, state in tcp_sockets() if remote == port and state == "01"}
