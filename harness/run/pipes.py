"""Messages between the harness and its processes: pickled, length-prefixed, on a pipe's file descriptor."""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

_HEAD = struct.Struct("!Q")


def send(fd: int, message: Any) -> None:
    """Write one message; ``BrokenPipeError`` when the other side is gone."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEAD.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side of the pipe is gone")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> Any:
    """Read one message; ``EOFError`` when the other side is gone."""
    (n,) = _HEAD.unpack(_read(fd, _HEAD.size))
    return pickle.loads(_read(fd, n))
