"""A flow that exports rows to a file, written two ways users write them: appended in place, or written to a
temporary file and moved over the old one (``os.replace``). A disk that fills half way through a write tells
them apart once the task is retried: the append leaves the half line behind, the replace leaves nothing."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, task


@task
def append_rows(path: str, rows: list[str]) -> None:
    with open(path, "a") as out:
        out.write("".join(f"{row}\n" for row in rows))


@task
def replace_rows(path: str, rows: list[str]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        out.write("".join(f"{row}\n" for row in rows))
    os.replace(tmp, path)


@task
def lines_in(path: str) -> list[str]:
    return Path(path).read_text().splitlines()


@flow
def export_rows(rows: list[str], path: str = "export.csv", atomic: bool = False) -> list[str]:
    """Write ``rows`` to ``path``, one a line (in place, or through a temporary file), then read the file back."""
    (replace_rows if atomic else append_rows)(path, rows)
    return lines_in(path)
