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

``harness record`` is the one mode in which the network is reached: every
connection the flow opens goes to the loopback server, which forwards each
request to the real host inside ``NetworkGuard.letting_through`` (real name
resolution, any destination, or the address ``connect_to`` pins a host to).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

from harness.run.internals import replace

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}
PINNED_BASE = ipaddress.IPv4Address("127.78.0.0")  # stand-in addresses of the hosts --connect-to pins
_LET_THROUGH: ContextVar[bool] = ContextVar("harness_let_through", default=False)


def let_through() -> bool:
    """Whether the current context is a recorded request on its way to the real host."""
    return _LET_THROUGH.get()


class BlockedConnection(ConnectionRefusedError):
    """A connection outside httpx was refused by the harness's network guard."""


class Redirect(Protocol):
    """Where declared hosts go on the wire (``harness.run.wire.redirect.Redirect``): a fake address, a loopback port."""

    def resolve(self, name: str) -> str | None: ...

    def target(self, sock: socket.socket, address: tuple[Any, ...]) -> tuple[str, int] | None: ...


class NetworkGuard:
    """Records and refuses DNS lookups but of loopback, and connections but to loopback's ``allowed_port``.

    ``also`` names more loopback ports let through: other Prefect servers of the
    process (the user's own test server), whose traffic is not the flow's.
    """

    def __init__(self, allowed_port: int, also: Iterable[int] = ()) -> None:
        self.allowed_port = allowed_port
        self._ports = {allowed_port, *also}
        self.blocked: list[str] = []
        self._lock = threading.Lock()
        self._pinned: dict[str, str] = {}  # host -> the stand-in address it resolves to while let through
        self._pins: dict[str, tuple[str, int]] = {}  # stand-in address -> where its connections really go

    def connect_to(self, targets: Mapping[str, tuple[str, int]]) -> None:
        """While let through, connect to ``host`` at ``targets[host]`` (an IPv4 address and a port) instead.

        curl's ``--connect-to``: the client still names the host (TLS server
        name, ``Host``), only the connection goes elsewhere. The host resolves
        to a stand-in address of its own, which the connect hook swaps for the
        target whatever port the client asked for.
        """
        for i, (host, target) in enumerate(targets.items()):
            stand_in = str(PINNED_BASE + i + 1)
            self._pinned[host.lower().rstrip(".")] = stand_in
            self._pins[stand_in] = target

    def pinned(self, host: str) -> bool:
        """Whether ``connect_to`` sends ``host`` elsewhere."""
        return host.lower().rstrip(".") in self._pinned

    def refused(self, what: str) -> None:
        """Note something refused that the guard did not see itself (a connection the wire server could not take)."""
        self._refuse(what)

    @contextlib.contextmanager
    def letting_through(self) -> Iterator[None]:
        """Let the current context resolve names and connect anywhere: a recorded request on its way."""
        token = _LET_THROUGH.set(True)
        try:
            yield
        finally:
            _LET_THROUGH.reset(token)

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
            if host in LOOPBACK_NAMES and port in guard._ports:
                return
            raise guard._refuse(f"a connection to {host}:{port}")

        def routed(sock: socket.socket, address: Any) -> Any:
            if _LET_THROUGH.get():  # a recorded request on its way to the real host
                return guard._pins.get(str(address[0]), address) if isinstance(address, tuple) else address
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
            if name is None or name in LOOPBACK_NAMES:
                # Never redirected: Prefect's own API is on loopback, and an endpoint declared there
                # (an API stand-in in a test, a recording's replay) is httpx's, served by respx.
                return real_getaddrinfo(host, port, *args, **kwargs)
            if _LET_THROUGH.get():  # a recorded request: the real name, or the address --connect-to pins
                pinned = guard._pinned.get(name.lower().rstrip("."))
                return real_getaddrinfo(pinned or host, port, *args, **kwargs)
            fake = redirect.resolve(name) if redirect is not None else None
            if fake is not None:  # a declared host (or, recording, any host): its own loopback address
                return real_getaddrinfo(fake, port, *args, **kwargs)
            raise guard._refuse(f"a DNS lookup of {name}" + (f" (port {port})" if port else ""))

        with contextlib.ExitStack() as stack:
            replace(stack, "socket:socket.connect", connect)
            replace(stack, "socket:socket.connect_ex", connect_ex)
            replace(stack, "socket:getaddrinfo", getaddrinfo)
            yield self
