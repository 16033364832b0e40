"""Fail closed below httpx: connections a flow opens by other means are refused.

respx intercepts httpx. The guard covers what it cannot see (the standard
library's urllib, requests, raw sockets): while a scenario runs, a DNS lookup
of anything but loopback, and a connection to anything but the harness's own
Prefect server, raise ``BlockedConnection`` before a packet leaves the process,
and the destination is recorded so the scenario fails naming it.

The wire transport is the exception for declared hosts: given a ``Redirect``,
a declared host's name resolves to a fake loopback address of its own, and a
connection to that address goes to the loopback port the redirect names (the
fault server), never further.

``harness record`` is the one mode in which the flow reaches the network: the
recording transport sends each of the flow's own httpx requests inside
``NetworkGuard.letting_through``; everything else stays refused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}
_LET_THROUGH: ContextVar[bool] = ContextVar("harness_let_through", default=False)


class BlockedConnection(ConnectionRefusedError):
    """A connection outside httpx was refused by the harness's network guard."""


class Redirect(Protocol):
    """Where declared hosts go on the wire (``harness.run.wire.redirect.Redirect``): a fake address, a loopback port."""

    def resolve(self, name: str) -> str | None: ...

    def target(self, sock: socket.socket, address: tuple[Any, ...]) -> tuple[str, int] | None: ...


class NetworkGuard:
    """Records and refuses DNS lookups but of loopback, and connections but to loopback's ``allowed_port``."""

    def __init__(self, allowed_port: int) -> None:
        self.allowed_port = allowed_port
        self.blocked: list[str] = []
        self._lock = threading.Lock()
        self._names: Counter[str] = Counter()  # hosts a recorded httpx request is being sent to

    @contextlib.contextmanager
    def letting_through(self, host: str) -> Iterator[None]:
        """Let the current context connect anywhere, and ``host`` be resolved, while one httpx request is recorded.

        The connection is opened in the context that sends the request; an event
        loop resolves names in a worker thread that does not carry that context,
        so the name is let through by itself for the request's duration.
        """
        token = _LET_THROUGH.set(True)
        with self._lock:
            self._names[host] += 1
        try:
            yield
        finally:
            _LET_THROUGH.reset(token)
            with self._lock:
                self._names[host] -= 1
                if self._names[host] <= 0:
                    del self._names[host]

    def _resolvable(self, name: str) -> bool:
        if name in LOOPBACK_NAMES or _LET_THROUGH.get():
            return True
        with self._lock:
            return name in self._names

    def _refuse(self, what: str) -> BlockedConnection:
        with self._lock:
            if what not in self.blocked:
                self.blocked.append(what)
        return BlockedConnection(f"harness: blocked {what}: a scenario's flow may not reach the network")

    @contextlib.contextmanager
    def active(self, redirect: Redirect | None = None) -> Iterator[NetworkGuard]:
        """Hook resolution and connections; a ``redirect`` sends declared hosts to loopback ports of its choosing."""
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex
        real_getaddrinfo = socket.getaddrinfo
        guard = self

        def check(address: Any) -> None:
            if not isinstance(address, tuple):
                return  # AF_UNIX and friends: local to this machine
            host, port = address[0], address[1]
            if (host in LOOPBACK_NAMES and port == guard.allowed_port) or _LET_THROUGH.get():
                return
            raise guard._refuse(f"a connection to {host}:{port}")

        def routed(sock: socket.socket, address: Any) -> Any:
            target = redirect.target(sock, address) if redirect is not None and isinstance(address, tuple) else None
            if target is None:
                check(address)
                return address
            if target[0] not in LOOPBACK_NAMES:
                raise guard._refuse(f"a redirected connection to {target[0]}:{target[1]}")
            return target

        def connect(self: socket.socket, address: Any) -> None:
            return real_connect(self, routed(self, address))

        def connect_ex(self: socket.socket, address: Any) -> int:
            return real_connect_ex(self, routed(self, address))

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else host
            # A loopback name is never redirected: Prefect's own API is on it, and an endpoint declared
            # there (an API stand-in in a test, a recording's replay) is httpx's, served by respx.
            fake = None
            if redirect is not None and name is not None and name not in LOOPBACK_NAMES:
                fake = redirect.resolve(name)
            if fake is not None:  # a declared host: its own loopback address
                return real_getaddrinfo(fake, port, *args, **kwargs)
            if name is not None and not guard._resolvable(name):
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
