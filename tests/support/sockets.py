"""This process's open TCP connections to a port: what a test checks a close left behind.

Counting the server's clients instead would count other tests' connections too, which close in
their own time.
"""

from __future__ import annotations

import os


def connections_to(port: int) -> set[int]:
    """Return the local ports of this process's open TCP connections to ``port`` on loopback."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # (the listing's own descriptor, or one closed meanwhile)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    local_ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if fields[9] in inodes and remote_port == port and fields[3] == "01":  # ESTABLISHED
                    local_ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return local_ports
