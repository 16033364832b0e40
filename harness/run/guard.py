"""Fail closed below httpx: connections a flow opens by other means are refused.

respx intercepts httpx. The guard covers what it cannot see (the standard
library's urllib, requests, raw sockets): while a scenario runs, a DNS lookup
of anything but loopback, and a connection to anything but the harness's own
Prefect server, raise ``BlockedConnection`` before a packet leaves the process,
and the destination is recorded so the scenario fails naming it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


class BlockedConnection(ConnectionRefusedError):
    """A connection outside httpx was refused by the harness's network guard."""


class NetworkGuard:
    """Records and refuses DNS lookups but of loopback, and connections but to loopback's ``allowed_port``."""

    def __init__(self, allowed_port: int) -> None:
        self.allowed_port = allowed_port
        self.blocked: list[str] = []
        self._lock = threading.Lock()

    def _refuse(self, what: str) -> BlockedConnection:
        with self._lock:
            if what not in self.blocked:
                self.blocked.append(what)
        return BlockedConnection(f"harness: blocked {what}: a scenario's flow may not reach the network")

    @contextlib.contextmanager
    def active(self) -> Iterator[NetworkGuard]:
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        real_getaddrinfo = socket.getaddrinfo
        guard = self

        def check(address: Any) -> None:
            if not isinstance(address, tuple):
                return  # AF_UNIX and friends: local to this machine
            host, port = address[0], address[1]
            if host in LOOPBACK_NAMES and port == guard.allowed_port:
                return
            raise guard._refuse(f"a connection to {host}:{port}")

        def connect(self: socket.socket, address: Any) -> None:
            check(address)
            return real_connect(self, address)

        def connect_ex(self: socket.socket, address: Any) -> int:
            check(address)
            return real_connect_ex(self, address)

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else host
            if name is not None and name not in LOOPBACK_NAMES:
                raise guard._refuse(f"a DNS lookup of {name}" + (f" (port {port})" if port else ""))
            return real_getaddrinfo(host, port, *args, **kwargs)

        setattr(socket.socket, "connect", connect)  # noqa: B010 (assigning a method mypy would reject)
        setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010
        socket.getaddrinfo = getaddrinfo
        try:
            yield self
        finally:
            setattr(socket.socket, "connect", real_connect)  # noqa: B010
            setattr(socket.socket, "connect_ex", real_connect_ex)  # noqa: B010
            socket.getaddrinfo = real_getaddrinfo
