"""The README's command outputs, produced by running the commands: ``python -m tests.readme_outputs [--check]``.

An output block in README.md is the fenced block (or the Markdown table: the output's first table) right after a
comment that says how it is made::

    <!-- output
    command: harness explore scenarios/github_stars.yaml --invariant completes --budget 200
    machine: '[\\d.]+ s\\b'
    -->

``command`` runs in bash with the environment's ``bin`` first on ``PATH``, in a scratch folder that holds the
repository's files (a copy, without its environments) and an empty ``reports/``: what a command writes lands
there, and a later block's command finds it. Optional keys: ``cwd`` (a folder under it), ``exit`` (the exit code it
must give, 0 by default), ``file`` (the block shows this file, written by the command, instead of its
output), ``lines`` (two regular expressions: the block is the output from the first line matching one
through the first line after it matching the other), ``prompt`` (the block begins with ``$ `` and the
command), ``stand_in`` (the loopback stand-in API of ``tests/test_record.py`` serves on 127.0.0.1:8000
meanwhile), ``check`` (a cheaper command for ``--check``, giving the same shape) and ``machine``: a regular
expression for the figures that depend on the machine (times, rates), which ``--check`` compares for shape
only. Everything else is compared exactly.

Without ``--check`` the blocks are written with what the commands print now; with it, nothing is written and
the exit code is 1 when a block differs (a diff for each), 2 when a command fails.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(
    r"^<!-- output\n(?P<spec>.*?)^-->\n(?:```[^\n]*\n(?P<block>.*?)^```$|(?P<table>(?:^\|[^\n]*\n)+))", re.S | re.M
)
KEYS = {"command", "cwd", "exit", "file", "lines", "prompt", "stand_in", "check", "machine"}
MASK = "<machine>"
TIMEOUT_S = 600
STAND_IN_PORT = 8000


class ReadmeError(Exception):
    """A marker that cannot be used, or a command that failed: where, and why."""


@dataclass(frozen=True)
class Output:
    """One marked block: where it is, how it is made, and what it holds."""

    line: int
    spec: dict[str, Any]
    start: int  # offsets of the block's content in the README's text
    end: int
    text: str
    table: bool = False  # a Markdown table, not a fenced block

    @property
    def command(self) -> str:
        return str(self.spec["command"])


def outputs(text: str, where: str = "README.md") -> list[Output]:
    markers = [m.start() for m in re.finditer(r"^<!--\s*output", text, re.M)]
    found = []
    for match in MARKER.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        try:
            spec = yaml.safe_load(match["spec"])
        except yaml.YAMLError as error:
            raise ReadmeError(f"{where}:{line}: the output marker is not YAML: {error}") from None
        if not isinstance(spec, dict) or "command" not in spec:
            raise ReadmeError(f"{where}:{line}: an output marker needs a command")
        unknown = sorted(set(spec) - KEYS)
        if unknown:
            raise ReadmeError(f"{where}:{line}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(KEYS))}")
        group = "block" if match["block"] is not None else "table"
        found.append(Output(line, spec, match.start(group), match.end(group), match[group], group == "table"))
    parsed = {text.rfind("<!--", 0, o.start) for o in found}
    for start in markers:
        if start not in parsed:
            line = text.count("\n", 0, start) + 1
            raise ReadmeError(
                f"{where}:{line}: an output marker is '<!-- output' alone on its line, the spec, '-->', "
                "then the block at once"
            )
    return found


def masked(text: str, machine: str | None) -> str:
    return re.sub(machine, MASK, text, flags=re.M) if machine else text


def differs(expected: str, actual: str, machine: str | None) -> list[str]:
    """The diff between the block as written and as made now, machine-dependent figures compared for shape."""
    ours, theirs = masked(expected, machine), masked(actual, machine)
    if ours == theirs:
        return []
    return list(difflib.unified_diff(ours.splitlines(), theirs.splitlines(), "README.md", "now", lineterm=""))


def sliced(output: str, lines: list[str]) -> str:
    first, last = (re.compile(pattern) for pattern in lines)
    rows = output.splitlines()
    start = next((i for i, row in enumerate(rows) if first.search(row)), None)
    if start is None:
        raise ReadmeError(f"no line of the output matches {first.pattern!r}")
    end = next((i for i in range(start, len(rows)) if last.search(rows[i])), None)
    if end is None:
        raise ReadmeError(f"no line after {first.pattern!r} matches {last.pattern!r}")
    return "\n".join(rows[start : end + 1]) + "\n"


@contextlib.contextmanager
def stand_in() -> Iterator[None]:
    from tests.test_record import StandIn

    try:
        api = StandIn(port=STAND_IN_PORT)
    except OSError as error:
        raise ReadmeError(f"the stand-in API cannot listen on 127.0.0.1:{STAND_IN_PORT}: {error}") from None
    try:
        yield
    finally:
        api.stop()


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A copy of the repository's files (not its environments, history or reports), with an empty ``reports/``:
    what a command writes stays there."""
    skip = shutil.ignore_patterns(".git", ".venv*", "reports", "__pycache__", ".*_cache", ".hypothesis", "*.egg-info")
    with tempfile.TemporaryDirectory(prefix="readme-") as folder:
        work = Path(folder) / "repo"
        shutil.copytree(ROOT, work, ignore=skip, symlinks=True)
        (work / "reports").mkdir()
        yield work


def made(output: Output, work: Path, check: bool) -> str:
    """What the block holds when made now, in the scratch folder ``work``."""
    spec = output.spec
    command = str(spec.get("check") or spec["command"]) if check else output.command
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HARNESS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    with stand_in() if spec.get("stand_in") else contextlib.nullcontext(), tempfile.TemporaryDirectory() as home:
        env["HOME"] = home
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=work / spec.get("cwd", "."),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # on a timeout, the command's own children go with it
        )
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise ReadmeError(f"README.md:{output.line}: {command!r} ran past {TIMEOUT_S} s") from None
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if done.returncode != spec.get("exit", 0):
        raise ReadmeError(
            f"README.md:{output.line}: {command!r} exited with {done.returncode}, not {spec.get('exit', 0)}:\n"
            + (done.stdout + done.stderr)[-3000:]
        )
    text = done.stdout + done.stderr
    if "file" in spec:
        written = work / spec.get("cwd", ".") / spec["file"]
        if not written.is_file():
            raise ReadmeError(f"README.md:{output.line}: {command!r} wrote no file {spec['file']}")
        text = written.read_text()
    if "lines" in spec:
        try:
            text = sliced(text, spec["lines"])
        except ReadmeError as error:
            raise ReadmeError(f"README.md:{output.line}: {error}:\n{text[-3000:]}") from None
    if output.table:  # the output's first table (a report file may have headings and more tables)
        rows = text.splitlines()
        first = next((i for i, row in enumerate(rows) if row.startswith("|")), len(rows))
        table = list(itertools.takewhile(lambda row: row.startswith("|"), rows[first:]))
        text = "".join(f"{row}\n" for row in table)
    if spec.get("prompt"):
        text = f"$ {output.command}\n{text}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.readme_outputs", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a block differs")
    parser.add_argument(
        "--only", metavar="TEXT", action="append", help="only the blocks whose command contains TEXT (repeatable)"
    )
    args = parser.parse_args(argv)
    text = README.read_text()
    try:
        blocks = [o for o in outputs(text) if args.only is None or any(t in o.command for t in args.only)]
        with scratch() as work:
            fresh = {o.start: made(o, work, args.check) for o in blocks}
    except ReadmeError as error:
        print(error, file=sys.stderr)
        return 2
    failed = 0
    for output in blocks:
        diff = differs(output.text, fresh[output.start], output.spec.get("machine"))
        state = "differs" if diff else "as documented"
        print(f"README.md:{output.line}: {output.command}: {state}")
        if diff and args.check:
            failed += 1
            print("\n".join(diff))
    if not args.check:
        if README.read_text() != text:
            print("README.md changed while the commands ran: nothing written; run again", file=sys.stderr)
            return 2
        for output in sorted(blocks, key=lambda o: o.start, reverse=True):
            text = text[: output.start] + fresh[output.start] + text[output.end :]
        README.write_text(text)
    print(f"{len(blocks)} output(s) checked, {failed} differ" if args.check else f"{len(blocks)} output(s) written")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
