"""Each ready kind of in-process fault raises exactly what the real failure raises, provoked here by hand.

Compared: the exception's type, its message (``str``), its ``args``, and for SQLite its ``sqlite_errorcode``
and ``sqlite_errorname``, for files its ``errno``, ``strerror`` and ``filename``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from harness.scenario.kinds import FILE_KINDS, KINDS, SQLITE_KINDS, transient


def sqlite_shape(exc: BaseException) -> tuple[Any, ...]:
    return (type(exc), str(exc), exc.args, exc.sqlite_errorcode, exc.sqlite_errorname)  # type: ignore[attr-defined]


def os_shape(exc: OSError) -> tuple[Any, ...]:
    return (type(exc), str(exc), exc.args, exc.errno, exc.strerror, exc.filename)


def provoked(call: Any) -> BaseException:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 (the real failure, whatever it is, is what is compared)
        return exc
    raise AssertionError("the failure could not be provoked")


def busy(tmp_path: Path) -> BaseException:
    """A second connection holds the write lock; this one gives up at once (``timeout=0``)."""
    db = str(tmp_path / "busy.db")
    with closing(sqlite3.connect(db, timeout=0)) as holder, closing(sqlite3.connect(db, timeout=0)) as other:
        holder.execute("CREATE TABLE t (x)")
        holder.commit()
        holder.execute("BEGIN IMMEDIATE")
        return provoked(lambda: other.execute("INSERT INTO t VALUES (1)"))


def locked(tmp_path: Path) -> BaseException:
    """A table dropped while a statement of the same connection still reads it."""
    with closing(sqlite3.connect(str(tmp_path / "locked.db"))) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
        conn.commit()
        reading = conn.execute("SELECT x FROM t")
        reading.fetchone()
        return provoked(lambda: conn.execute("DROP TABLE t"))


def full(tmp_path: Path) -> BaseException:
    """A database that may not grow past two pages."""
    with closing(sqlite3.connect(str(tmp_path / "full.db"))) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.execute("PRAGMA max_page_count = 2")
        return provoked(lambda: conn.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 100))


def corrupt(tmp_path: Path) -> BaseException:
    """A database whose pages past the first two were overwritten."""
    db = tmp_path / "corrupt.db"
    with closing(sqlite3.connect(str(db))) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [("y" * 500,)] * 50)
        conn.commit()
    data = bytearray(db.read_bytes())
    data[2048:] = b"\x55" * (len(data) - 2048)
    db.write_bytes(bytes(data))
    with closing(sqlite3.connect(str(db))) as conn:
        return provoked(lambda: conn.execute("SELECT count(*) FROM t").fetchall())


@pytest.mark.parametrize(
    ("kind", "provoke"),
    [("sqlite_busy", busy), ("sqlite_locked", locked), ("sqlite_full", full), ("sqlite_corrupt", corrupt)],
)
def test_a_sqlite_kind_raises_what_the_real_failure_raises(kind: str, provoke: Any, tmp_path: Path) -> None:
    real = provoke(tmp_path)
    assert sqlite_shape(SQLITE_KINDS[kind].exception()) == sqlite_shape(real)


def test_sqlite_disk_io_is_sqlites_primary_ioerr() -> None:
    """A real disk I/O error needs a failing device (none here); SQLite's documented primary code is pinned."""
    exc = SQLITE_KINDS["sqlite_disk_io"].exception()
    assert (type(exc), str(exc), exc.sqlite_errorcode, exc.sqlite_errorname) == (  # type: ignore[attr-defined]
        sqlite3.OperationalError,
        "disk I/O error",
        10,
        "SQLITE_IOERR",
    )


def test_file_not_found_is_what_open_raises(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "such.csv")
    real = provoked(lambda: open(missing, "w"))  # noqa: SIM115
    assert isinstance(real, OSError)
    assert os_shape(FILE_KINDS["file_not_found"].exception(missing)) == os_shape(real)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_disk_full_is_what_a_write_to_a_full_device_raises() -> None:
    def write() -> None:
        with open("/dev/full", "w") as f:
            f.write("row\n")

    real = provoked(write)
    assert isinstance(real, OSError)
    assert os_shape(FILE_KINDS["disk_full"].exception()) == os_shape(real)
    assert FILE_KINDS["partial_write"].errno == real.errno  # a write stopped half way ends the same


def test_permission_denied_is_what_opening_a_read_only_file_raises() -> None:
    """As a user without privileges (root may write anywhere: the check then runs in a child process that has
    become ``nobody``), in a folder of its own that user can reach."""
    folder = Path(tempfile.mkdtemp(prefix="harness-kinds-", dir=tempfile.gettempdir()))
    try:
        folder.chmod(0o755)
        target = folder / "read_only.csv"
        target.write_text("")
        target.chmod(0o444)
        seen = _open_for_writing_as_nobody(str(target))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if seen is None:
        pytest.skip("a read-only file could not be provoked here")
    ours = FILE_KINDS["permission_denied"].exception(str(target))
    assert [type(ours).__name__, ours.errno, ours.strerror, ours.filename] == seen


def _open_for_writing_as_nobody(path: str) -> list[Any] | None:
    """What ``open(path, "w")`` raises in a forked child with no privileges: [type, errno, strerror, filename]."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then out
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            try:
                open(path, "w").close()  # noqa: SIM115
                answer: list[Any] = []
            except OSError as exc:
                answer = [type(exc).__name__, exc.errno, exc.strerror, exc.filename]
            os.write(write, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    answer = json.loads(text) if text else []
    return answer or None


def test_what_is_worth_a_retry() -> None:
    assert {k for k in KINDS if transient(k)} == {"sqlite_busy", "sqlite_locked", "sqlite_disk_io"}
    with pytest.raises(KeyError):
        transient("sqlite_bussy")
