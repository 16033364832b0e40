"""The fault server: real HTTP/1.1 on loopback, one request per connection, from the scenario's schedules.

Every connection the guard redirects lands here. The server learns from the
client's port which declared host it was opened for (``Redirect.origin``),
speaks TLS when the client does (the certificate of the host it names by
SNI), reads one request, takes the step the respx transport would take
(``Injector.take``: the same schedules, the same call log) and serves it
(``faults``) with ``Connection: close``, so every request opens a connection
of its own. Connect-phase faults never reach it: the redirect sends those
connections to a port that refuses or one that never answers.

A recording run (``forwarding``) hands each request it reads to a forwarder
instead, which sends it to the real host and answers with what came back.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import httpx

from harness.run.injector import Injector
from harness.run.states import Recorder
from harness.run.wire.faults import answer, serve_fault
from harness.run.wire.redirect import ForwardRedirect, Origin, Ports, Redirect
from harness.run.wire.tls import Authority
from harness.scenario.model import BODY_FAULTS

HEAD_LIMIT = 64 * 1024
READ_LIMIT = 30.0  # seconds a client may take to send its request
FIRST_BYTE_LIMIT = 5.0  # recording: seconds before a connection shows it speaks HTTP (or TLS)
DEFAULT_PORTS = {"http": "80", "https": "443"}


class _BadRequest(Exception):
    """The client sent no request, or not one HTTP/1.1 can read."""


class _Closed(_BadRequest):
    """The client closed its connection before its request was whole: it gave up, which is its own affair."""


class Forwarding(Protocol):
    """A recording run's forwarder (``harness.run.wire.forward.Forwarder``): sends one request on, answers it."""

    def forward(self, conn: socket.socket, request: Request, origin: Origin) -> None: ...

    def refused(self, what: str) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Request:
    """A request as the server read it: its line, its headers as sent (names as written, in order), its body."""

    method: str
    target: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    scheme: str


@dataclass(frozen=True, slots=True)
class _Scenario:
    injector: Injector | None
    redirect: Redirect | ForwardRedirect
    ended: threading.Event
    forwarder: Forwarding | None = None


class FaultServer:
    """One listener per session; ``serving`` hands it one scenario's schedules at a time."""

    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self._sockets: list[socket.socket] = []
        self._current: _Scenario | None = None
        self._open: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self.ports: Ports | None = None

    def start(self) -> Ports:
        """Listen on loopback; also bind a port that refuses and fill one listener's queue so that it never answers."""
        listener = self._bound()
        listener.listen(128)
        refused = self._bound()  # bound, never listening: a connection to it is refused
        unanswered = self._bound()
        unanswered.listen(0)
        filler = socket.socket()
        self._sockets.append(filler)
        filler.connect(unanswered.getsockname())  # the queue (backlog 0: one) is full: SYNs are dropped
        self.ports = Ports(listener.getsockname()[1], refused.getsockname()[1], unanswered.getsockname()[1])
        thread = threading.Thread(target=self._accept, args=(listener,), name="harness-wire", daemon=True)
        thread.start()
        self._acceptor = thread
        return self.ports

    def stop(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()
        if self.ports is not None:
            self._acceptor.join(timeout=5)
        self.ports = None

    @contextlib.contextmanager
    def serving(self, injector: Injector) -> Iterator[Redirect]:
        """Serve ``injector``'s schedules to the connections opened during the block; all of them end with it."""
        assert self.ports is not None, "start the server first"
        redirect = Redirect(injector, self.ports)
        with self._serving(_Scenario(injector, redirect, threading.Event())):
            yield redirect

    @contextlib.contextmanager
    def forwarding(self, forwarder: Forwarding, own_port: int, recorder: Recorder) -> Iterator[ForwardRedirect]:
        """Forward every request the flow sends during the block (a recording run) through ``forwarder``."""
        assert self.ports is not None, "start the server first"
        redirect = ForwardRedirect(self.ports, own_port, recorder)
        with self._serving(_Scenario(None, redirect, threading.Event(), forwarder)):
            yield redirect

    @contextlib.contextmanager
    def _serving(self, current: _Scenario) -> Iterator[None]:
        self._current = current
        try:
            yield
        finally:
            self._current = None
            current.ended.set()
            if current.forwarder is not None:
                current.forwarder.stop()  # requests still on their way to a real host end with the run
            with self._lock:
                conns, threads = list(self._open), list(self._threads)
            for conn in conns:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn, socket.SHUT_RDWR)
            for thread in threads:
                thread.join(timeout=5)
            if current.forwarder is not None:
                current.forwarder.close()

    def _bound(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._sockets.append(sock)
        return sock

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return  # stopped
            current = self._current
            if current is None:
                conn.close()
                continue
            thread = threading.Thread(
                target=self._connection, args=(conn, peer[1], current), name="harness-wire-conn", daemon=True
            )
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _connection(self, conn: socket.socket, client_port: int, current: _Scenario) -> None:
        origin = current.redirect.origin(client_port)
        self._track(conn, True)
        try:
            if origin is not None:
                conn = self._serve(conn, origin, current)
        except (_Closed, ConnectionResetError):
            pass  # the client gave up before its request was whole: its own affair
        except (OSError, ValueError, _BadRequest) as exc:
            # The client went away, or sent what no server would answer (a bad length, a bad chunk size).
            if current.forwarder is not None and origin is not None and not current.ended.is_set():
                current.forwarder.refused(_unrecordable(origin, exc))
        finally:
            self._track(conn, False)
            conn.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._open.add if add else self._open.discard)(conn)

    def _serve(self, conn: socket.socket, origin: Origin, current: _Scenario) -> socket.socket:
        # A client that sends nothing (a protocol where the server speaks first) is no HTTP client to record.
        conn.settimeout(FIRST_BYTE_LIMIT if current.forwarder is not None else READ_LIMIT)
        scheme = "http"
        first = conn.recv(1, socket.MSG_PEEK)
        if not first:
            raise _Closed("the client closed the connection before sending anything")
        if first == b"\x16":  # a TLS handshake record
            raw = conn
            conn = self.authority.context_for(origin.host).wrap_socket(conn, server_side=True)
            self._track(raw, False)
            self._track(conn, True)
            scheme = "https"
        conn.settimeout(READ_LIMIT)
        reader = _Reader(conn)
        method, target, headers = reader.head()
        url = _url(scheme, headers.get("host") or origin.host, target)
        if current.forwarder is not None:
            request = Request(method, target, url, reader.items, reader.body(headers), scheme)
            current.forwarder.forward(conn, request, origin)
            return conn
        injector = current.injector
        assert injector is not None
        taken = injector.take(method, url, origin.record, "wire", origin.line)
        if taken is None:
            reader.body(headers)
            text = f"harness: no endpoint declared for {method} {url}"
            answer(conn, httpx.Response(501, text=text), method)
            return conn
        step = taken.step
        injector.clock.sleep(taken.latency, origin.line)  # virtual; on the real-time clock, a real wait
        response = injector.answer(step)
        answered = not step.fault or step.fault in BODY_FAULTS
        status = response.status_code if answered else None
        sent = tuple(response.headers.items()) if answered else ()
        injector.log(taken.at, method, url, taken.endpoint, step.describe(), status, sent, origin.record, "wire")
        if step.fault == "write_timeout":
            current.ended.wait()  # read nothing more: the client's send blocks once the socket buffers are full
        elif step.fault:
            reader.body(headers)
            serve_fault(step.fault, conn, response, current.ended)
        else:
            reader.body(headers)
            answer(conn, response, method)
        return conn


class _Reader:
    """An HTTP/1.1 request read from a socket: its head, then its body by length or chunks."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.buf = conn, bytearray()
        self.items: tuple[tuple[str, str], ...] = ()  # the head's headers as sent

    def _more(self) -> None:
        data = self.conn.recv(65536)
        if not data:
            raise _Closed("the client closed the connection")
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > HEAD_LIMIT:
                raise _BadRequest("request head too large")
            self._more()
        line, _, rest = bytes(self.buf).partition(b"\r\n")
        self.buf = bytearray(rest)
        return line

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        data, self.buf = bytes(self.buf[:n]), self.buf[n:]
        return data

    def head(self) -> tuple[str, str, dict[str, str]]:
        parts = self.line().decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _BadRequest(f"not an HTTP request line: {parts!r}")
        items = []
        while line := self.line():
            name, _, value = line.decode("latin-1").partition(":")
            items.append((name.strip(), value.strip()))
        self.items = tuple(items)
        return parts[0].upper(), parts[1], {name.lower(): value for name, value in items}

    def body(self, headers: dict[str, str]) -> bytes:
        if headers.get("expect", "").lower() == "100-continue":  # the client waits for this before its body
            self.conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            out = bytearray()
            while size := int(self.line().split(b";")[0] or b"0", 16):
                out += self.exact(size)
                self.line()
            while self.line():  # trailers
                pass
            return bytes(out)
        return self.exact(int(headers.get("content-length") or 0))


def _unrecordable(origin: Origin, exc: BaseException) -> str:
    """What a recording could not take from a connection, in the words of the guard's refusals."""
    where = f"{origin.host}:{origin.port}"
    if isinstance(exc, ssl.SSLError):
        return (
            f"a TLS connection to {where} whose client does not trust the session's CA "
            f"({exc.reason or exc}): a client given its own CA file (verify=PATH) cannot be recorded over TLS"
        )
    if isinstance(exc, TimeoutError):
        return f"a connection to {where} that sent no HTTP request within {FIRST_BYTE_LIMIT:g} s"
    return f"a connection to {where} that sent no HTTP request ({exc})"


def _url(scheme: str, host: str, target: str) -> str:
    """The request's absolute URL, the scheme's default port left out, as endpoints write it."""
    if "://" in target:
        return target
    name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if port == DEFAULT_PORTS[scheme]:
        host = name
    return f"{scheme}://{host.lower()}{target}"
