"""The ready targets and kinds of in-process faults (``functions:``): each kind raises exactly what the real
failure raises.

A SQLite failure is the ``sqlite3`` exception the C module raises, with its
message and the ``sqlite_errorcode`` / ``sqlite_errorname`` it carries; a
file failure is the ``OSError`` subclass ``open`` or ``write`` raises, with
its ``errno``, ``strerror`` and (for ``open``) ``filename``.
``tests/test_function_kinds.py`` provokes each real failure by hand (a second
connection holding the write lock, a table dropped under a reading cursor, a
page limit, a corrupted file, ``/dev/full``, a read-only file as a user
without privileges) and compares.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SqliteKind:
    """A SQLite failure: its exception type, message and primary result code."""

    type: type[sqlite3.Error]
    message: str
    code: int
    name: str
    transient: bool  # worth a retry: another attempt may find it gone

    def exception(self) -> sqlite3.Error:
        exc = self.type(self.message)
        exc.sqlite_errorcode = self.code
        exc.sqlite_errorname = self.name
        return exc


@dataclass(frozen=True, slots=True)
class FileKind:
    """A file failure: the ``errno`` it carries (the type is the one ``OSError`` picks for it)."""

    errno: int
    transient: bool
    partial: bool = False  # a write that stops half way first

    def exception(self, filename: str | None = None, filename2: str | None = None) -> OSError:
        """As ``open`` raises it (naming its file), ``os.replace`` (naming both) or a write (naming none)."""
        args: tuple[object, ...] = (self.errno, os.strerror(self.errno))
        if filename2 is not None:
            return OSError(*args, filename, None, filename2)
        return OSError(*args, filename) if filename is not None else OSError(*args)


SQLITE_KINDS: dict[str, SqliteKind] = {
    "sqlite_busy": SqliteKind(sqlite3.OperationalError, "database is locked", 5, "SQLITE_BUSY", True),
    "sqlite_locked": SqliteKind(sqlite3.OperationalError, "database table is locked", 6, "SQLITE_LOCKED", True),
    "sqlite_disk_io": SqliteKind(sqlite3.OperationalError, "disk I/O error", 10, "SQLITE_IOERR", True),
    "sqlite_full": SqliteKind(sqlite3.OperationalError, "database or disk is full", 13, "SQLITE_FULL", False),
    "sqlite_corrupt": SqliteKind(
        sqlite3.DatabaseError, "database disk image is malformed", 11, "SQLITE_CORRUPT", False
    ),
}

FILE_KINDS: dict[str, FileKind] = {
    "disk_full": FileKind(errno.ENOSPC, False),
    "permission_denied": FileKind(errno.EACCES, False),
    "file_not_found": FileKind(errno.ENOENT, False),
    "partial_write": FileKind(errno.ENOSPC, False, partial=True),
}

KINDS = (*SQLITE_KINDS, *FILE_KINDS)

# The ready targets, and the ``where`` filters each takes.
READY_TARGETS: dict[str, tuple[str, ...]] = {
    "sqlite3:connect": ("path",),
    "sqlite3:execute": ("path",),
    "sqlite3:commit": ("path",),
    "file:open_write": ("path",),
    "file:write": ("path",),
    "file:replace": ("path",),
}


def transient(kind: str) -> bool:
    """Whether a retry may succeed where ``kind`` failed (the ``transient`` retry condition's judgement)."""
    found = SQLITE_KINDS.get(kind) or FILE_KINDS.get(kind)
    if found is None:
        raise KeyError(kind)
    return found.transient
