"""A TCP proxy on a loopback port that holds every chunk for a while before passing it on.

Put it between one process and Redis to force an interleaving: with 30 ms of delay on the way
to Redis, a command that process sends lands 30 ms later than any command another process sends
directly. Order within each direction of each connection is kept, as TCP keeps it. The delay can
be changed while connections are open.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time

__all__ = ["DelayProxy"]


class DelayProxy:
    """Forward 127.0.0.1:<port> to ``target_port``, delaying each chunk by ``to_server``/``to_client`` s."""

    def __init__(self, target_port: int, *, to_server: float = 0.0, to_client: float = 0.0) -> None:
        self.target_port = target_port
        self.to_server = to_server
        self.to_client = to_client
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> DelayProxy:
        threading.Thread(target=self._accept, name="delay-proxy", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            self._pump(client, server, lambda: self.to_server)
            self._pump(server, client, lambda: self.to_client)

    def _pump(self, source: socket.socket, sink: socket.socket, delay: object) -> None:
        held: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def receive() -> None:
            while True:
                try:
                    chunk = source.recv(65536)
                except OSError:
                    chunk = b""
                held.put((time.monotonic() + delay(), chunk))  # type: ignore[operator]
                if not chunk:
                    return

        def send() -> None:
            while True:
                due, chunk = held.get()
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                if not chunk:
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    return
                try:
                    sink.sendall(chunk)
                except OSError:
                    return

        threading.Thread(target=receive, daemon=True).start()
        threading.Thread(target=send, daemon=True).start()
