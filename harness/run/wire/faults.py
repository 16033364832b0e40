"""What a step does on a real socket: an answer, or a fault as the network would commit it.

The answer is the respx transport's own (``Injector.answer``), so every
status, header and malformed body is the same on both transports. Faults
are real: a reset is an RST (``SO_LINGER`` 0), a stall waits for the client
to give up (its own timeout fires, in real time), a garbage status line, a
close before any response, a body shorter than its ``Content-Length``, a
malformed chunk, a body dribbled in pieces.
"""

from __future__ import annotations

import socket
import struct
import threading

import httpx

DRIBBLE_PIECES = 4  # slow_body: the body in this many pieces...
DRIBBLE_GAP = 0.25  # ...with this many real seconds between them
GARBAGE_STATUS = b"HTTP/1.1 OK-ISH not a status line\r\n\r\n"
STALLS = ("read_timeout", "write_timeout", "pool_timeout")


def head(response: httpx.Response, *, drop: tuple[str, ...] = (), extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The status line and headers of ``response``, closing the connection after it."""
    reason = httpx.codes.get_reason_phrase(response.status_code) or "Unknown"
    lines = [f"HTTP/1.1 {response.status_code} {reason}"]
    names = {"connection", *drop}
    lines += [f"{k}: {v}" for k, v in response.headers.multi_items() if k.lower() not in names]
    if "content-length" not in response.headers and "content-length" not in drop and not extra:
        lines.append(f"Content-Length: {len(response.content)}")
    lines += [f"{k}: {v}" for k, v in extra]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(conn: socket.socket, response: httpx.Response, method: str) -> None:
    """A whole answer; no body for HEAD."""
    conn.sendall(head(response) + (b"" if method == "HEAD" else response.content))


def reset(conn: socket.socket) -> None:
    """Close with an RST: the client reads "connection reset by peer"."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def stall(conn: socket.socket, ended: threading.Event) -> None:
    """Answer nothing and read nothing more until the client gives up or the scenario ends."""
    conn.settimeout(0.1)
    while not ended.is_set():
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


def serve_fault(fault: str, conn: socket.socket, response: httpx.Response, ended: threading.Event) -> None:
    """Commit ``fault`` on ``conn``, after the request was read (or, for a stall, its head)."""
    if fault in STALLS:
        stall(conn, ended)
    elif fault == "remote_protocol_error":
        conn.sendall(GARBAGE_STATUS)
    elif fault == "close_before_response":
        conn.shutdown(socket.SHUT_WR)
    elif fault == "partial_body":
        body = response.content
        conn.sendall(head(response) + body[: max(len(body) // 2, 1)])
    elif fault == "bad_chunk":
        body = response.content
        first = body[: max(len(body) // 2, 1)]
        chunked = f"{len(first):x}\r\n".encode() + first + b"\r\nzz-not-a-size\r\n" + body[len(first) :]
        conn.sendall(head(response, drop=("content-length",), extra=(("Transfer-Encoding", "chunked"),)) + chunked)
    elif fault == "slow_body":
        body = response.content
        conn.sendall(head(response))
        size = max(-(-len(body) // DRIBBLE_PIECES), 1)
        for i in range(0, len(body), size):
            if i and ended.wait(DRIBBLE_GAP):
                return
            conn.sendall(body[i : i + size])
    else:  # connection_reset; a connect-phase fault met after connecting resets too
        reset(conn)
