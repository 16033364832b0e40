"""A recording run's forwarder: each request the flow sent reaches the real host, and the exchange is kept.

``harness record`` routes every connection the flow opens to the loopback
server (``ForwardRedirect``), whatever its client: httpx, requests, urllib,
aiohttp, an SDK. The server reads one request (after TLS, with a certificate
of the session's CA for the host the client named) and the forwarder sends it
on, from the server's thread, inside the guard's ``letting_through``: real
name resolution (or the address ``--connect-to`` pins), TLS verified as
usual, through the proxy the environment named before the run. The whole
answer is read, kept as an ``Exchange`` (its body decoded) and written back
to the client byte for byte, with ``Connection: close``.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from harness.run.recording import Exchange
from harness.run.wire.redirect import Origin
from harness.run.wire.server import Request

TIMEOUT = 60.0  # seconds the real host may take to connect, and between two reads
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
    }
)
NO_BODY = {204, 304}


class Sink(Protocol):
    """Where exchanges go: the recording run's transport (``harness.run.recording.Recording``)."""

    def now(self) -> float: ...

    def keep(self, exchange: Exchange, record: Any) -> None: ...

    def letting_through(self) -> Any: ...


class Forwarder:
    """Sends each request on to the host the client named and answers the client with what came back."""

    def __init__(self, sink: Sink, proxies: Mapping[str, str]) -> None:
        self.sink = sink
        self.proxies = dict(proxies)  # as the environment named them before the run cleared them

    def forward(self, conn: socket.socket, request: Request, origin: Origin) -> None:
        at = self.sink.now()
        url = urlsplit(request.url)
        host, port = url.hostname or origin.host, url.port or origin.port
        try:
            with self.sink.letting_through():
                status, reason, headers, raw = self._send(request, host, port)
        except _Failed as failure:
            failed = Exchange(at, request.method, request.url, request.headers, None, (), b"", str(failure))
            self.sink.keep(failed, origin.record)
            return  # the client's connection closes with nothing written: it meets the failure too
        exchange = Exchange(at, request.method, request.url, request.headers, status, headers, _decoded(headers, raw))
        self.sink.keep(exchange, origin.record)
        conn.sendall(_head(status, reason, headers, raw, request.method) + raw)

    def _send(self, request: Request, host: str, port: int) -> tuple[int, str, tuple[tuple[str, str], ...], bytes]:
        proxy = self._proxy(request.scheme, host)
        target = request.target
        connection: http.client.HTTPConnection
        if request.scheme == "https":
            context = ssl.create_default_context()  # the process's trust, as any client of it has
            if proxy is not None:
                connection = http.client.HTTPSConnection(*proxy, timeout=TIMEOUT, context=context)
                connection.set_tunnel(host, port)
            else:
                connection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)
        elif proxy is not None:
            connection = http.client.HTTPConnection(*proxy, timeout=TIMEOUT)
            target = request.url  # absolute: the proxy forwards it
        else:
            connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        try:
            try:
                connection.connect()
            except OSError as exc:  # refused, unknown name, no route, TLS refused: the host cannot be reached
                kind = "ConnectTimeout" if isinstance(exc, TimeoutError) else "ConnectError"
                raise _Failed(f"{kind}: {exc}") from exc
            try:
                return _exchange(connection, request, target)
            except TimeoutError as exc:
                raise _Failed(f"ReadTimeout: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise _Failed(f"ReadError: {type(exc).__name__}: {exc}") from exc
        finally:
            connection.close()

    def _proxy(self, scheme: str, host: str) -> tuple[str, int] | None:
        """The proxy the environment named for ``scheme``, unless ``no_proxy`` leaves ``host`` out."""
        proxy = self.proxies.get(scheme) or self.proxies.get("all")
        if not proxy or _bypassed(host, self.proxies.get("no", "")):
            return None
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return (parts.hostname or "", parts.port or 8080) if parts.hostname else None


def environment_proxies() -> dict[str, str]:
    """The proxies the environment names now (``https_proxy``, ``no_proxy``, ...), by scheme."""
    return dict(urllib.request.getproxies_environment())


def _bypassed(host: str, no_proxy: str) -> bool:
    names = [n.strip().lower().lstrip(".") for n in no_proxy.split(",") if n.strip()]
    host = host.lower()
    return "*" in names or any(host == n or host.endswith(f".{n}") for n in names)


class _Failed(Exception):
    """No answer came from the real host; the message names the failure in httpx's words (``ConnectError: ...``)."""


def _exchange(
    connection: http.client.HTTPConnection, request: Request, target: str
) -> tuple[int, str, tuple[tuple[str, str], ...], bytes]:
    """Send ``request`` on an open connection; the whole answer: status, reason, headers as sent, raw body."""
    connection.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
    for name, value in request.headers:
        if name.lower() not in HOP_BY_HOP:
            connection.putheader(name, value)
    if request.body or request.method in ("POST", "PUT", "PATCH"):
        connection.putheader("Content-Length", str(len(request.body)))
    connection.endheaders(request.body or None)
    response = connection.getresponse()
    raw = response.read()
    return response.status, response.reason, tuple(response.getheaders()), raw


def _decoded(headers: tuple[tuple[str, str], ...], raw: bytes) -> bytes:
    """The body without its content encoding (gzip, deflate, brotli), as httpx would give it to the flow."""
    try:
        return httpx.Response(200, headers=headers, content=raw).content
    except httpx.DecodingError:
        return raw


def _head(status: int, reason: str, headers: tuple[tuple[str, str], ...], raw: bytes, method: str) -> bytes:
    """The status line and headers the client gets: the host's, its body's length, and ``Connection: close``."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in HOP_BY_HOP]
    if method == "HEAD" or status in NO_BODY or status < 200:
        lines += [f"{k}: {v}" for k, v in headers if k.lower() == "content-length"]
    else:
        lines.append(f"Content-Length: {len(raw)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
