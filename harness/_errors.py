"""The harness's exceptions.

    HarnessError                 base of everything the harness raises
    ├── ScenarioError            a scenario file or document is invalid (file, line, field)
    ├── ScenarioFailure          a scenario ran and its expectations were not met (AssertionError)
    ├── ScenarioTimeout          a scenario ran past its wall-clock limit
    ├── ServerError              the Prefect test server could not be started
    ├── UntestedPrefect          the installed Prefect is outside the range the harness is tested with
    ├── UsageError               a tool was given what it cannot use (an option's value, a file, a flow)
    └── WorkerError              a job could not run on a worker process or cluster (lost, or not importable)

Every error names the scenario file and line it is about.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class HarnessError(Exception):
    """Base class of every error the harness raises."""


def shown(path: Path) -> str:
    """A path as messages show it: relative to the working directory when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a scenario, located in its file."""

    path: Path
    line: int | None  # 1-based; None when only a byte offset is known
    field: str
    message: str
    offset: int | None = None
    snippet: str = ""

    def location(self) -> str:
        if self.line is not None:
            return f"{shown(self.path)}:{self.line}"
        if self.offset is not None:
            return f"{shown(self.path)}: byte {self.offset}"
        return shown(self.path)

    def __str__(self) -> str:
        head = (
            f"{self.location()}: {self.field}: {self.message}" if self.field else f"{self.location()}: {self.message}"
        )
        return f"{head}\n{self.snippet}" if self.snippet else head


class ScenarioError(HarnessError, ValueError):
    """A scenario file or document is invalid."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def first(self) -> Problem:
        return self.problems[0]


class ScenarioFailure(HarnessError, AssertionError):
    """A scenario ran and did not do what its ``expect`` says."""


class ScenarioTimeout(HarnessError):
    """A scenario ran longer than its wall-clock limit."""


class ServerError(HarnessError):
    """The Prefect test server could not be started."""


class UntestedPrefect(HarnessError):
    """The installed Prefect is outside the range the harness is tested with (``harness.run.internals``)."""


class UsageError(HarnessError, ValueError):
    """A tool (``record``, ``explore``, ``coverage``, a strategies file) was given what it cannot use.

    A message may name the tool's parameters as ``{max_body}``: ``str()`` names
    them as the Python API does (``max_body``), ``as_flags()`` as the command line
    does (``--max-body``).
    """

    def __init__(self, message: str, *options: str) -> None:
        self.template, self.options = message, options
        super().__init__(self._named(lambda option: option))

    def as_flags(self) -> str:
        return self._named(lambda option: "--" + option.replace("_", "-"))

    def _named(self, name: Callable[[str], str]) -> str:
        text = self.template
        for option in self.options:
            text = text.replace(f"{{{option}}}", name(option))
        return text


class WorkerError(HarnessError):
    """A job could not run on a worker: its process was lost, or the scenario does not load there."""
