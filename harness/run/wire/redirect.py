"""Redirection at connect time: a declared host resolves to a fake loopback address, whose connections reach the server.

While a scenario runs, the network guard asks a ``Redirect`` what a name
resolves to (a declared host: ``127.77.0.N``, an address of its own) and
where a connection to such an address really goes, whatever port the client
asked for: anyio (httpx async) keeps only the resolved address and connects
to the URL's port, so answering the server's port from ``getaddrinfo`` would
not be enough. A connect-phase fault is decided there, per host: a refused
connection goes to a port where nothing listens, an unanswered one to a
listener whose accept queue is full. Every other connection goes to the
fault server, which learns from the client's own port which host it was for
and which task run opened it.

A recording run (``ForwardRedirect``) routes every host the same way, and
every address but Prefect's API: the server forwards each request to the
real host and keeps the exchange (``harness.run.wire.forward``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.run.environ import environ
from harness.run.guard import LOOPBACK_NAMES
from harness.run.injector import Injector
from harness.run.internals import replace, replaced
from harness.run.states import Recorder, TaskRecord

FAKE_PREFIX = "127.77.0."
FORWARD_BASE = ipaddress.IPv4Address("127.77.0.0")  # a recording: host N resolves to this + N
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclass(frozen=True, slots=True)
class Ports:
    """Where redirected connections go on loopback: the server, a refusing port and an unanswering one."""

    server: int
    refused: int
    unanswered: int


@dataclass(frozen=True, slots=True)
class Origin:
    """What a connection was opened for: the declared host, the task run that opened it, the port it asked for."""

    host: str
    record: TaskRecord | None
    port: int = 0
    line: Any = None  # the client's line on the virtual clock: the server's waits for it are its waits


class _Routes:
    """Connections sent to the server, each remembered by the client's port until the server asks."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports
        self._origins: dict[int, Origin] = {}
        self._lock = threading.Lock()

    def _to_server(self, sock: socket.socket, origin: Origin) -> tuple[str, int]:
        """Send the connection to the server, which learns from the client's port what it was opened for."""
        if sock.getsockname()[1] == 0:
            sock.bind(("127.0.0.1", 0))  # the client's port is known before the server accepts
        with self._lock:
            self._origins[sock.getsockname()[1]] = origin
        return ("127.0.0.1", self.ports.server)

    def origin(self, client_port: int) -> Origin | None:
        """What the connection from ``client_port`` was opened for (once)."""
        with self._lock:
            return self._origins.pop(client_port, None)


class Redirect(_Routes):
    """One scenario's declared hosts, their fake addresses, and the connections opened to them."""

    def __init__(self, injector: Injector, ports: Ports) -> None:
        super().__init__(ports)
        hosts = [h for h in injector.hosts if not _is_address(h) and h not in LOOPBACK_NAMES][:254]
        self.injector = injector
        self.addresses = {host: f"{FAKE_PREFIX}{i + 1}" for i, host in enumerate(hosts)}
        self._hosts = {address: host for host, address in self.addresses.items()}

    def resolve(self, name: str) -> str | None:
        """The fake address of a declared host; None for any other name."""
        return self.addresses.get(name.lower().rstrip("."))

    def target(self, sock: socket.socket, address: tuple[Any, ...]) -> tuple[str, int] | None:
        """Where a connection to ``address`` really goes; None when it is no declared host's."""
        host = self._hosts.get(str(address[0]))
        if host is None:
            return None
        record = self.injector.recorder.current()
        step = self.injector.claim_connect(host, record)
        if step is not None:
            return ("127.0.0.1", self.ports.refused if step.fault == "connect_error" else self.ports.unanswered)
        return self._to_server(sock, Origin(host, record, int(address[1]), self.injector.clock.line()))


class ForwardRedirect(_Routes):
    """A recording run's routes: every host the flow names, and every address but Prefect's, reach the server.

    Any name resolves to a fake loopback address of its own (none is refused:
    the run may reach any host), and a connection to such an address, or to
    an address the flow named itself (an API on loopback, an IP), goes to the
    server, which forwards it. Connections to Prefect's own API go straight.
    """

    def __init__(self, ports: Ports, own_port: int, recorder: Recorder) -> None:
        super().__init__(ports)
        self.own_port, self.recorder = own_port, recorder
        self._addresses: dict[str, str] = {}  # host -> fake address
        self._hosts: dict[str, str] = {}  # fake address -> host

    def resolve(self, name: str) -> str | None:
        host = name.lower().rstrip(".")
        with self._lock:
            address = self._addresses.get(host)
            if address is None:
                address = str(FORWARD_BASE + len(self._addresses) + 1)
                self._addresses[host], self._hosts[address] = address, host
            return address

    def target(self, sock: socket.socket, address: tuple[Any, ...]) -> tuple[str, int] | None:
        named, port = str(address[0]), int(address[1])
        with self._lock:
            host = self._hosts.get(named)
        if host is None:
            if named in LOOPBACK_NAMES and port == self.own_port:
                return None  # Prefect's own API
            if sock.family != socket.AF_INET or sock.type != socket.SOCK_STREAM:
                # The server takes IPv4 TCP only. Refused as a host that is not there: a client trying ``localhost``
                # at ::1 first goes on to 127.0.0.1, as it would with nothing listening on ::1.
                raise ConnectionRefusedError(errno.ECONNREFUSED, "harness record: only IPv4 TCP is recorded")
            host = named
        return self._to_server(sock, Origin(host, self.recorder.current(), port))


def _is_address(host: str) -> bool:
    """An IP address is never redirected: only names resolve to fake addresses (the Prefect API is on 127.0.0.1)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def cleared_proxies() -> Iterator[None]:
    """No proxy variables while a scenario runs: requests and urllib would send declared hosts to a proxy.

    ``urlopen`` keeps the opener it first builds, with the proxies of that
    moment: the run gets one of its own, and the process's is put back after.
    """
    with replaced("urllib.request:_opener", None), environ(dict.fromkeys(PROXY_VARIABLES)):
        yield


@contextlib.contextmanager
def python_resolvers() -> Iterator[None]:
    """Resolvers and event loops that bypass Python's socket module are swapped for the standard ones.

    aiohttp resolves with c-ares when ``aiodns`` is installed, and uvloop
    connects in C: neither would meet the guard. During a scenario aiohttp's
    default resolver is its threaded one (``socket.getaddrinfo``), and a
    uvloop event loop policy gives way to asyncio's own.
    """
    resolver = sys.modules.get("aiohttp.resolver")
    policy = asyncio.get_event_loop_policy()
    swap_policy = type(policy).__module__.split(".")[0] == "uvloop"
    with contextlib.ExitStack() as stack:
        if resolver is not None and "aiohttp.connector" in sys.modules:
            replace(stack, "aiohttp.connector:DefaultResolver", resolver.ThreadedResolver)
        if swap_policy:
            asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
            stack.callback(asyncio.set_event_loop_policy, policy)
        yield
