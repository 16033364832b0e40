"""A scenario as it travels to a worker: its file, its name and its case label, loaded again there.

In the process that made it, a reference carries the scenario object itself,
so a serial run uses exactly what was loaded. Pickled, it carries only the
file, name and label; the worker loads the file (once per process) and finds
the document, so a worker needs the same environment as the command: the
harness and the flows importable, the scenario files at the same paths.
"""

from __future__ import annotations

from pathlib import Path

from harness._errors import ScenarioError, WorkerError, shown
from harness.scenario.loader import load_file
from harness.scenario.model import Scenario
from harness.scenario.strategy import Policy

_LOADED: dict[tuple[str, int], list[Scenario | ScenarioError]] = {}  # by path and modification time

SAME_ENVIRONMENT = (
    "a worker needs the same environment as the command that sends it runs: the harness and the flows "
    "importable, the scenario files at the same paths"
)


class ScenarioRef:
    """One case of a scenario document: (file, document name, case label)."""

    __slots__ = ("_case", "label", "name", "path")

    def __init__(self, path: str, name: str, label: str | None = None) -> None:
        self.path, self.name, self.label = path, name, label or name
        self._case: tuple[str, Scenario, Policy | None] | None = None

    @classmethod
    def of(cls, scenario: Scenario, label: str | None = None, policy: Policy | None = None) -> ScenarioRef:
        """A reference to ``scenario`` (the case ``label`` of its document, with ``policy``)."""
        ref = cls(str(scenario.path), scenario.name, label)
        ref._case = (ref.label, scenario, policy)
        return ref

    def __repr__(self) -> str:
        return f"ScenarioRef({self.path!r}, {self.name!r}, {self.label!r})"

    def __getstate__(self) -> tuple[str, str, str]:
        if self.path == "<string>":
            raise WorkerError(
                f"scenario {self.name!r} was made in Python, not loaded from a file: only scenarios from files "
                "can be sent to a worker process"
            )
        return (self.path, self.name, self.label)

    def __setstate__(self, state: tuple[str, str, str]) -> None:
        self.path, self.name, self.label = state
        self._case = None

    def case(self) -> tuple[str, Scenario, Policy | None]:
        """(label, scenario, policy): the object this reference was made from, else loaded from its file."""
        if self._case is None:
            self._case = self._load()
        return self._case

    def scenario(self) -> Scenario:
        return self.case()[1]

    def _load(self) -> tuple[str, Scenario, Policy | None]:
        try:
            key = (self.path, Path(self.path).stat().st_mtime_ns)
            documents = _LOADED.get(key)
            if documents is None:
                documents = _LOADED[key] = load_file(self.path)
        except (OSError, ScenarioError) as exc:
            raise WorkerError(f"{self.path} cannot be read on this worker: {exc}; {SAME_ENVIRONMENT}") from exc
        for doc in documents:
            if isinstance(doc, Scenario) and doc.name == self.name:
                for label, scenario, policy in doc.cases():
                    if label == self.label:
                        return label, scenario, policy
        problems = "".join(f"\n  {d}" for d in documents if isinstance(d, ScenarioError))
        raise WorkerError(
            f"scenario {self.label!r} of {shown(Path(self.path))} cannot be loaded on this worker; "
            f"{SAME_ENVIRONMENT}{problems}"
        )
