"""``sqlite3`` calls faulted through a subclass of the connection (its C methods cannot be patched)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from harness.run.functions.sqlite import faulted
from harness.scenario.kinds import SQLITE_KINDS

FULL = SQLITE_KINDS["sqlite_full"]


def failing(target: str, times: int = 1) -> tuple[list[tuple[str, str]], object]:
    """A ``decide`` that raises ``sqlite_full`` on ``target`` ``times`` times, and the calls it saw."""
    seen: list[tuple[str, str]] = []
    left = [times]

    def decide(called: str, path: str, timeout: float) -> BaseException | None:
        seen.append((called, path))
        if called == target and left[0] > 0:
            left[0] -= 1
            return FULL.exception()
        return None

    return seen, decide


def rows(db: Path) -> list[tuple[int]]:
    with closing(sqlite3.connect(str(db))) as conn:
        return conn.execute("SELECT x FROM t ORDER BY x").fetchall()


def store(db: Path, values: list[int]) -> None:
    """What a flow's store task does: create, insert, commit."""
    with closing(sqlite3.connect(str(db))) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
        conn.commit()


def test_a_faulted_commit_stores_nothing_and_the_next_one_stores_every_row(tmp_path: Path) -> None:
    db = tmp_path / "rows.db"
    seen, decide = failing("sqlite3:commit")
    with faulted(decide):  # type: ignore[arg-type]
        with pytest.raises(sqlite3.OperationalError, match="database or disk is full") as raised:
            store(db, [1, 2])
        assert raised.value.sqlite_errorname == "SQLITE_FULL"
        store(db, [1, 2])
    assert rows(db) == [(1,), (2,)]
    assert [c for c, _ in seen] == ["sqlite3:connect", "sqlite3:execute", "sqlite3:execute", "sqlite3:commit"] * 2
    assert {p for _, p in seen} == {str(db)}


def test_the_commit_of_with_conn_is_faulted_too_and_rolls_back(tmp_path: Path) -> None:
    db = tmp_path / "rows.db"
    store(db, [])
    _, decide = failing("sqlite3:commit")
    with faulted(decide), closing(sqlite3.connect(str(db))) as conn:  # type: ignore[arg-type]
        assert isinstance(conn, sqlite3.Connection)
        with pytest.raises(sqlite3.OperationalError), conn:
            conn.execute("INSERT INTO t VALUES (7)")
        assert not conn.in_transaction
    assert rows(db) == []


def test_execute_on_a_cursor_and_on_the_connection_is_faulted(tmp_path: Path) -> None:
    db = tmp_path / "rows.db"
    store(db, [1])
    _, decide = failing("sqlite3:execute", times=2)
    with faulted(decide), closing(sqlite3.dbapi2.connect(str(db))) as conn:  # type: ignore[arg-type]
        with pytest.raises(sqlite3.OperationalError):
            conn.cursor().execute("SELECT 1")
        with pytest.raises(sqlite3.OperationalError):
            conn.executescript("SELECT 1;")
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_factory_of_the_flows_own_is_kept(tmp_path: Path) -> None:
    class Mine(sqlite3.Connection):
        mine = True

    _, decide = failing("sqlite3:connect", times=0)
    with faulted(decide), closing(sqlite3.connect(str(tmp_path / "x.db"), factory=Mine)) as conn:  # type: ignore[arg-type]
        assert isinstance(conn, Mine) and conn.mine


def test_connect_itself_can_fail_and_everything_is_put_back_after(tmp_path: Path) -> None:
    real = sqlite3.connect
    _, decide = failing("sqlite3:connect")
    with faulted(decide), pytest.raises(sqlite3.OperationalError):  # type: ignore[arg-type]
        sqlite3.connect(str(tmp_path / "x.db"))
    assert sqlite3.connect is real and sqlite3.dbapi2.connect is real
    with closing(sqlite3.connect(str(tmp_path / "x.db"))) as conn:
        assert type(conn) is sqlite3.Connection


def test_a_commit_with_no_transaction_open_is_not_asked_about(tmp_path: Path) -> None:
    """sqlite3 sends no COMMIT when no transaction is open: a real one could not fail, nor is it counted."""
    seen, decide = failing("sqlite3:commit")
    with faulted(decide), closing(sqlite3.connect(str(tmp_path / "x.db"))) as conn:  # type: ignore[arg-type]
        conn.commit()
    assert [c for c, _ in seen] == ["sqlite3:connect"]
