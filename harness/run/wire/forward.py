"""A recording run's forwarder: each request the flow sent reaches the real host, and the exchange is kept.

``harness record`` routes every connection the flow opens to the loopback
server (``ForwardRedirect``), whatever its client: httpx, requests, urllib,
aiohttp, an SDK. The server reads one request (after TLS, with a certificate
of the session's CA for the host the client named) and the forwarder sends it
on, from the server's thread, inside the guard's ``letting_through``: real
name resolution (or the address ``--connect-to`` pins), TLS verified with
the process's trust, through the proxy the environment named before the run.
The whole answer is read, kept as an ``Exchange`` (its body decoded) and
written back to the client byte for byte, with ``Connection: close``.

The client's own timeout still rules: while the answer is on its way, the
client's connection is watched, and a client that gives up (closes) ends the
request to the real host too; the exchange is then a failure, never an answer
the flow did not get. The end of the run ends every request still on its way.
"""

from __future__ import annotations

import base64
import errno
import http.client
import os
import select
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Mapping
from contextlib import AbstractContextManager, suppress
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from harness.run.recording import Exchange
from harness.run.states import TaskRecord
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
WATCH_EVERY = 0.05  # seconds between two looks at a waiting client's connection


class Sink(Protocol):
    """Where exchanges go: the recording run's transport (``harness.run.recording.Recording``)."""

    def now(self) -> float: ...

    def keep(self, exchange: Exchange, record: TaskRecord | None) -> None: ...

    def refused(self, what: str) -> None: ...

    def letting_through(self) -> AbstractContextManager[None]: ...

    def pinned(self, host: str) -> bool: ...


class _Upstream:
    """A connection to the real host, or to an HTTP proxy (``proxy_headers`` then go with the absolute URL).

    Its connect (``open``, in place of ``socket.create_connection``) can be
    called off from another thread (``cancel``): a client that gives up, or
    the run's end, does not wait for a host that never answers.
    """

    def __init__(self, connection: http.client.HTTPConnection, proxy_headers: Mapping[str, str] | None) -> None:
        self.connection, self.proxy_headers = connection, proxy_headers
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()
        sock = self.connection.sock
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def open(self, address: tuple[str, int], timeout: float, source_address: Any = None) -> socket.socket:
        error: OSError = OSError(f"cannot resolve {address[0]}")
        for family, kind, proto, _, where in socket.getaddrinfo(address[0], address[1], 0, socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                self._connect(sock, where, timeout)
            except OSError as exc:
                sock.close()
                error = exc
                if self.cancelled.is_set():
                    break
                continue
            sock.settimeout(timeout)
            return sock
        raise error

    def _connect(self, sock: socket.socket, where: Any, timeout: float) -> None:
        sock.setblocking(False)
        code = sock.connect_ex(where)
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, os.strerror(code))
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        deadline = time.monotonic() + timeout
        while not poller.poll(WATCH_EVERY * 1000):
            if self.cancelled.is_set():
                raise ConnectionAbortedError("the request was called off")
            if time.monotonic() > deadline:
                raise TimeoutError("timed out")
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))


class _Failed(Exception):
    """No answer came from the real host; the message names the failure in httpx's words (``ConnectError: ...``)."""


class Forwarder:
    """Sends each request on to the host the client named and answers the client with what came back."""

    def __init__(self, sink: Sink, proxies: Mapping[str, str]) -> None:
        self.sink = sink
        self.proxies = dict(proxies)  # as the environment named them before the run cleared them
        self._open: set[_Upstream] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._closed = False

    def refused(self, what: str) -> None:
        self.sink.refused(what)

    def stop(self) -> None:
        """Call off every request still on its way: the run is over (each is kept as a failure)."""
        with self._lock:
            self._stopped = True
            upstreams = list(self._open)
        for upstream in upstreams:
            upstream.cancel()

    def close(self) -> None:
        """Keep nothing more: the run's exchanges have been read (a request that outlived the end is dropped)."""
        with self._lock:
            self._closed = True

    def forward(self, conn: socket.socket, request: Request, origin: Origin) -> None:
        """Send ``request`` to where the client connected (``origin``: the host it resolved, the port it asked)."""
        at = self.sink.now()
        gone = threading.Event()
        done = threading.Event()
        upstream: _Upstream | None = None
        try:
            upstream = self._connection(request.scheme, origin.host, origin.port)
            watcher = threading.Thread(target=_watch, args=(conn, upstream, gone, done), daemon=True)
            watcher.start()
            try:
                with self.sink.letting_through():
                    status, reason, headers, raw = self._send(upstream, request)
            finally:
                done.set()
                watcher.join()
        except _Failed as failure:
            why = str(failure)
            if gone.is_set():
                why = "ReadTimeout: the flow's client gave up waiting for the answer"
            elif self._stopped:
                why = "ReadError: the run ended before the answer came"
            self._keep(Exchange(at, request.method, request.url, request.headers, None, (), b"", why), origin)
            return  # the client's connection closes with nothing written: it meets the failure too
        finally:
            if upstream is not None:
                self._forget(upstream)
        decoded = _decoded(headers, raw)
        try:
            if gone.is_set():
                raise ConnectionAbortedError("the flow's client gave up waiting for the answer")
            conn.sendall(_head(status, reason, headers, raw, request.method) + raw)
        except OSError as exc:
            failed = Exchange(at, request.method, request.url, request.headers, None, (), b"", f"ReadTimeout: {exc}")
            self._keep(failed, origin)
            return
        self._keep(Exchange(at, request.method, request.url, request.headers, status, headers, decoded), origin)

    def _keep(self, exchange: Exchange, origin: Origin) -> None:
        with self._lock:
            if self._closed:
                return
        self.sink.keep(exchange, origin.record)

    def _connection(self, scheme: str, host: str, port: int) -> _Upstream:
        """A connection to ``host`` (not yet open): direct, or through the proxy the environment named."""
        proxy = None if self.sink.pinned(host) else self._proxy(scheme, host)
        connection: http.client.HTTPConnection
        headers = None
        if scheme == "https":
            context = ssl.create_default_context()  # the process's trust, as any client of it has
            if proxy is not None:  # a tunnel (CONNECT), the proxy's credentials on it
                connection = http.client.HTTPSConnection(proxy[0], proxy[1], timeout=TIMEOUT, context=context)
                connection.set_tunnel(host, port, headers=proxy[2])
            else:
                connection = http.client.HTTPSConnection(host, port, timeout=TIMEOUT, context=context)
        elif proxy is not None:  # the whole URL on the request line, the proxy's credentials beside it
            connection, headers = http.client.HTTPConnection(proxy[0], proxy[1], timeout=TIMEOUT), proxy[2]
        else:
            connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        upstream = _Upstream(connection, headers)
        connection._create_connection = upstream.open  # type: ignore[attr-defined]  # a connect that can be called off
        with self._lock:
            self._open.add(upstream)
            if self._stopped:
                upstream.cancel()
        return upstream

    def _forget(self, upstream: _Upstream) -> None:
        upstream.connection.close()
        with self._lock:
            self._open.discard(upstream)

    def _send(self, upstream: _Upstream, request: Request) -> tuple[int, str, tuple[tuple[str, str], ...], bytes]:
        try:
            upstream.connection.connect()
        except OSError as exc:  # refused, unknown name, no route, TLS refused: the host cannot be reached
            kind = "ConnectTimeout" if isinstance(exc, TimeoutError) else "ConnectError"
            raise _Failed(f"{kind}: {exc}") from exc
        try:
            return _exchange(upstream, request)
        except TimeoutError as exc:
            raise _Failed(f"ReadTimeout: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _Failed(f"ReadError: {type(exc).__name__}: {exc}") from exc

    def _proxy(self, scheme: str, host: str) -> tuple[str, int, dict[str, str]] | None:
        """The HTTP proxy the environment named for ``scheme`` (its address, its credentials), unless bypassed."""
        proxy = self.proxies.get(scheme) or self.proxies.get("all")
        bypass: Any = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # public, untyped
        if not proxy or bypass(host, self.proxies):
            return None
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.scheme != "http" or not parts.hostname:
            raise _Failed(f"ConnectError: the proxy {parts.scheme}://{parts.hostname or ''} is not an http:// proxy")
        headers = {}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        return parts.hostname, parts.port or 80, headers


def environment_proxies() -> dict[str, str]:
    """The proxies the environment names now (``https_proxy``, ``no_proxy``, ...), by scheme."""
    return dict(urllib.request.getproxies_environment())


def _watch(conn: socket.socket, upstream: _Upstream, gone: threading.Event, done: threading.Event) -> None:
    """Until ``done``: a client that closes its connection (its own timeout fired) calls the request off."""
    poller = select.poll()
    poller.register(conn, select.POLLIN | select.POLLHUP | select.POLLERR)
    while not done.is_set():
        # An HTTP/1.1 client sends nothing more until it has the answer: anything to read is its close.
        if poller.poll(WATCH_EVERY * 1000) and not done.is_set():
            gone.set()
            upstream.cancel()
            return


def _exchange(upstream: _Upstream, request: Request) -> tuple[int, str, tuple[tuple[str, str], ...], bytes]:
    """Send ``request`` on an open connection; the whole answer: status, reason, headers as sent, raw body."""
    connection, proxied = upstream.connection, upstream.proxy_headers
    connection.putrequest(
        request.method,
        request.url if proxied is not None else request.target,
        skip_host=True,
        skip_accept_encoding=True,
    )
    for name, value in request.headers:
        if name.lower() not in HOP_BY_HOP:
            connection.putheader(name, value)
    for name, value in (proxied or {}).items():
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
