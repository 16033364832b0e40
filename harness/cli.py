"""The command line: `harness run`, `validate`, `compare`, `explore`, `coverage`, `schema`, `record`; parse, print."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
SEEDS = 20  # `harness compare --seeds`; every other default is the tool's own, read from it


def parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per job."""
    out = argparse.ArgumentParser(prog="harness", description="Fault-injection scenarios for Prefect flows.")
    out.add_argument("--version", action="version", version=_version())
    sub = out.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_compare(sub)
    _add_validate(sub)
    _add_explore(sub)
    _add_crashes(sub)
    _add_coverage(sub)
    _add_schema(sub)
    _add_record(sub)
    return out


def _add_record(sub: Any) -> None:
    """`harness record`: one live run of a flow, written as a scenario."""
    from harness.record import DEFAULT_MAX_BODY as MAX_BODY

    cmd = sub.add_parser(
        "record",
        help="run a flow once against the live API and write what happened as a scenario, secrets left out",
        description=(
            "Run the flow once on Prefect's real engine with the network open for its own requests only (any "
            "client: httpx, requests, urllib, aiohttp; Prefect's own traffic is never recorded), and write a "
            "scenario: one endpoint per distinct METHOD URL, each answer a step (status, allow-listed headers, the "
            "body), and expectations from the run. Authorization, cookies, secret query parameters "
            "and the names given to --redact never reach the file. The file is replayed once with the API gone "
            "before it is written. Exit 2, writing nothing, on invalid input or a run that cannot be recorded."
        ),
    )
    cmd.add_argument("flow", help="the flow: package.module:flow_function, or a built-in name")
    cmd.add_argument("--parameters", default="{}", metavar="JSON", help="the flow's keyword arguments, a JSON object")
    cmd.add_argument("--out", required=True, metavar="FILE", help="the scenario file to write")
    cmd.add_argument("--name", help="the scenario's name (default: '<flow function> as recorded')")
    cmd.add_argument(
        "--redact",
        nargs="+",
        action="extend",
        default=[],
        metavar="NAME",
        help="also leave out this header, query parameter, JSON field or parameter (repeatable)",
    )
    cmd.add_argument(
        "--max-body",
        type=int,
        default=MAX_BODY,
        metavar="BYTES",
        help=f"trim lists in a JSON body to fit (default {MAX_BODY}, {MAX_BODY // 1024} KiB)",
    )
    cmd.add_argument(
        "--connect-to",
        action="append",
        default=[],
        metavar="HOST=ADDRESS:PORT",
        help=(
            "connect to ADDRESS:PORT whenever the flow asks for HOST, which it still names (TLS, Host): an API "
            "served elsewhere than its name says, e.g. a local stand-in (repeatable)"
        ),
    )
    cmd.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    _add_timeout(cmd, "the run")
    cmd.add_argument("--verbose", "-v", action="store_true", help="show Prefect's logs and the flow's own output")
    cmd.set_defaults(func=_record, runs_flows=True)


def _add_schema(sub: Any) -> None:
    """`harness schema`: the JSON Schema of the scenario language, for editors."""
    cmd = sub.add_parser(
        "schema",
        help="write the JSON Schema of a scenario document (or of a strategies file), for editors",
        description=(
            "Write the JSON Schema (draft 2020-12) of one scenario document, generated from the harness's own "
            "model: point a YAML editor at it for completion and checking as you type. `harness validate` "
            "still has the last word (imports, flows, tasks, rules across keys)."
        ),
    )
    cmd.add_argument("--strategies", action="store_true", help="the schema of a strategies file instead")
    cmd.add_argument("--out", metavar="FILE", help="write it to FILE (default: standard output)")
    cmd.set_defaults(func=_schema, runs_flows=False)


def _add_coverage(sub: Any) -> None:
    """`harness coverage`: which fault kinds each flow and endpoint is tried with; runs nothing."""
    cmd = sub.add_parser(
        "coverage",
        help="which fault kinds each flow and endpoint is tried with (runs nothing)",
        description=(
            "Read the scenario files and print, per flow and endpoint, the kinds its scripted steps serve "
            "(fault:<name>, malformed:<name>, status:<code>) and those only a chaos option serves. "
            "Exit 1 when --require names a kind that a flow's scripted steps never serve, 2 on invalid files."
        ),
    )
    cmd.add_argument("paths", nargs="*", default=["scenarios"], help="scenario files or folders (default: scenarios/)")
    cmd.add_argument("--json", metavar="FILE", help="the rows and each scenario's checks as JSON")
    cmd.add_argument("--markdown", metavar="FILE", help="the rows as a Markdown table")
    cmd.add_argument(
        "--require",
        metavar="KIND,...",
        help="kinds every flow (or each --flow) must serve in a scripted step; fault:* and malformed:* stand "
        "for every kind of the language",
    )
    cmd.add_argument("--flow", action="append", metavar="FLOW", help="hold only this flow to --require (repeatable)")
    cmd.set_defaults(func=_coverage, runs_flows=False)


def _version() -> str:
    """The harness's version and Prefect's, read from the installed distributions (Prefect is not imported)."""
    from importlib.metadata import version

    from harness.run.internals import NEWEST, OLDEST

    return (
        f"harness {version('prefect-fault-harness')} (prefect {version('prefect')}; "
        f"tested with Prefect {OLDEST} to {NEWEST})"
    )


def _add_run(sub: Any) -> None:
    """`harness run`: run scenarios and report."""
    cmd = sub.add_parser("run", help="run scenarios and report")
    cmd.add_argument("paths", nargs="*", default=["scenarios"], help="scenario files or folders (default: scenarios/)")
    cmd.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    cmd.add_argument("--real-time", action="store_true", help="sleep retry delays and latency for real")
    _add_timeout(cmd, "one scenario")
    cmd.add_argument(
        "--transport",
        choices=("respx", "wire"),
        default="respx",
        help="httpx's transport where a scenario names none (default respx; other clients always use the wire)",
    )
    cmd.add_argument(
        "--name",
        action="append",
        metavar="NAME",
        help="run only this scenario: its exact name (with its strategy variants), a variant's "
        "('NAME[strategy]'), or a glob ('cfpb etl: *'); repeatable",
    )
    cmd.add_argument("--verbose", "-v", action="store_true", help="show Prefect's logs and the flows' own output")
    _add_spread(cmd, "scenarios")
    cmd.set_defaults(func=_run, runs_flows=True)


def _add_compare(sub: Any) -> None:
    """`harness compare`: strategies side by side on the same faults."""
    cmd = sub.add_parser("compare", help="compare fault-tolerance strategies on the same faults")
    cmd.add_argument("paths", nargs="*", default=["scenarios"], help="scenario files or folders (default: scenarios/)")
    cmd.add_argument(
        "--strategies",
        default="as_written,no_retries,fixed,exponential_jitter,transient",
        help="comma-separated strategy names: built-in presets or ones from --strategies-file",
    )
    cmd.add_argument("--strategies-file", metavar="FILE", help="YAML file of named strategies")
    cmd.add_argument("--seeds", type=int, default=SEEDS, help=f"random scenarios run seeds 0..N-1 (default {SEEDS})")
    cmd.add_argument("--json", metavar="FILE", help="the cells as JSON, for pipelines")
    cmd.add_argument("--markdown", metavar="FILE", help="Markdown report (fits $GITHUB_STEP_SUMMARY)")
    cmd.add_argument("--html", metavar="FILE", help="self-contained HTML page with a chart per scenario")
    _add_timeout(cmd, "one run")
    _add_spread(cmd, "runs")
    cmd.set_defaults(func=_compare, runs_flows=True)


def _add_spread(cmd: Any, what: str) -> None:
    """--workers and --dask: where the runs go; the report is the same, in the same order."""
    cmd.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help=f"run the {what} in N worker processes, each with its own Prefect server (default 1: in this process)",
    )
    cmd.add_argument(
        "--dask",
        metavar="ADDRESS",
        help=f"run the {what} on the Dask scheduler at ADDRESS, or on a local cluster of --workers processes "
        "with 'local' (needs the dask extra; every worker needs the harness and the flows importable)",
    )


def _add_validate(sub: Any) -> None:
    """`harness validate`: check files without running them."""
    cmd = sub.add_parser("validate", help="check scenario files without running them")
    cmd.add_argument("paths", nargs="*", default=["scenarios"])
    cmd.set_defaults(func=_validate, runs_flows=False)


def _add_explore(sub: Any) -> None:
    """`harness explore`: search fault schedules for a breaking one."""
    from harness.explore import BUDGET, SHRINK_RUNS, SHRINK_S
    from harness.generators import MAX_FAULTS

    cmd = sub.add_parser(
        "explore",
        help="search fault schedules for the smallest that breaks an invariant; write it as a scenario",
        description=(
            "Draw fault schedules (transport faults, error statuses, malformed bodies, with latency) served before "
            "each endpoint's healthy answer (its last 2xx answer, or chaos' otherwise), run them, and shrink the "
            "first that breaks the invariant to a minimal schedule with Hypothesis. It is printed and written "
            "to DIR as a scenario with "
            "`xfail`. Exit 1 when a schedule broke the invariant, 0 when none of the budget did, 2 when the scenario "
            "cannot be searched (invalid, or a run could not finish)."
        ),
    )
    cmd.add_argument("scenario_file", help="scenario file: its flow, parameters and endpoints")
    cmd.add_argument(
        "--invariant",
        required=True,
        metavar="NAME",
        help="completes, no_data_loss, no_duplicates, bounded_calls:N or module:function",
    )
    cmd.add_argument(
        "--budget",
        type=int,
        default=BUDGET,
        metavar="N",
        help=f"schedules tried before shrinking (Hypothesis max_examples; default {BUDGET}); shrinking "
        "adds at most --shrink-runs runs",
    )
    cmd.add_argument(
        "--out",
        default="reports/found",
        metavar="DIR",
        help="folder to write the minimal scenario to (default reports/found, which no run collects)",
    )
    cmd.add_argument("--seed", type=int, default=0, help="the same seed finds the same schedule (default 0)")
    cmd.add_argument("--scenario", metavar="NAME", help="the document to explore (default: the file's first)")
    cmd.add_argument(
        "--max-faults",
        type=int,
        default=MAX_FAULTS,
        metavar="N",
        help=f"faults per endpoint at most (default {MAX_FAULTS})",
    )
    cmd.add_argument(
        "--shrink-runs",
        type=int,
        default=SHRINK_RUNS,
        metavar="N",
        help=f"flow runs shrinking may add (default {SHRINK_RUNS})",
    )
    cmd.add_argument(
        "--shrink-seconds",
        type=float,
        default=SHRINK_S,
        metavar="SECONDS",
        help=f"wall-clock time shrinking may add (default {SHRINK_S:g})",
    )
    _add_timeout(cmd, "one run")
    cmd.set_defaults(func=_explore, runs_flows=True)


def _add_crashes(sub: Any) -> None:
    """`harness crashes`: crash the flow at every point of a run, run it again, compare the data."""
    cmd = sub.add_parser(
        "crashes",
        help="crash the flow at every point of a run and run it again: which points lose or duplicate data",
        description=(
            "Run the scenario once without a crash, then once per point it went through (each task run's "
            "before_task, after_return, after_commit and after_task, each call's after_call), its process "
            "killed there and the flow run again. A point passes when the last run ends in the same state as the "
            "run without a crash and its data query reads the same rows. Exit 0 when every point passes, 1 when "
            "one does not (--write writes those points as scenarios that fail the same way), 2 on bad input."
        ),
    )
    cmd.add_argument("scenario_file", help="scenario file: its flow, parameters and endpoints")
    cmd.add_argument("--name", metavar="NAME", help="the document to sweep (default: the file's first)")
    cmd.add_argument("--how", choices=("kill", "terminate", "interrupt"), default="kill", help="how the process dies")
    cmd.add_argument("--reruns", type=int, default=1, metavar="N", help="runs after each crash (default 1)")
    cmd.add_argument("--strategy", metavar="NAME", help="a strategy of the scenario's, or a preset (cached, ...)")
    cmd.add_argument("--json", metavar="FILE", help="the points as JSON")
    cmd.add_argument("--markdown", metavar="FILE", help="the points as a Markdown table")
    cmd.add_argument("--write", metavar="FILE", help="write the failing points as scenarios to FILE")
    _add_timeout(cmd, "one run")
    cmd.set_defaults(func=_crashes, runs_flows=True)


def _add_timeout(cmd: Any, what: str) -> None:
    from harness.run.session import TIME_LIMIT_S as TIMEOUT_S

    cmd.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT_S,
        metavar="SECONDS",
        help=f"wall-clock limit of {what} (default {TIMEOUT_S:g}, 0 for none)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the command, and map what the harness raises to a message and an exit code, for every command."""
    from harness._errors import HarnessError, UsageError

    args = parser().parse_args(argv)
    if args.runs_flows:
        if not getattr(args, "verbose", False):
            # Before Prefect is first imported: its logging is configured at import.
            os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
        # The command owns its process: Prefect, imported with the flows, makes its home and reads its
        # profiles in a folder of the command's, never the user's ~/.prefect.
        from harness.run.environ import private_prefect_home

        private_prefect_home()
    try:
        return int(args.func(args))
    except HarnessError as exc:  # an input it cannot use, a run that could not finish, a lost worker
        message = exc.as_flags() if isinstance(exc, UsageError) else str(exc)
        notes = "".join(f"\n  {note}" for note in getattr(exc, "__notes__", ()))
        print(f"harness {args.command}: {message}{notes}", file=sys.stderr)
        return EXIT_INVALID


def _load(paths: Sequence[str]) -> tuple[list[Any], list[Any]]:
    """The valid scenarios and the errors of the invalid ones (printed), under ``paths``."""
    from harness._errors import ScenarioError, UsageError
    from harness.scenario.loader import load_paths

    try:
        items = load_paths(paths)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    good = [i for i in items if not isinstance(i, ScenarioError)]
    bad = [i for i in items if isinstance(i, ScenarioError)]
    for err in bad:
        print(err, file=sys.stderr)
    return good, bad


def _coverage(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from harness import coverage
    from harness._errors import UsageError

    try:
        required = coverage.expand([k.strip() for k in (args.require or "").split(",") if k.strip()])
    except UsageError as exc:
        raise UsageError(f"{{require}}: {exc}", "require") from None
    good, bad = _load(args.paths)
    if bad:
        return EXIT_INVALID
    table = coverage.rows(good)
    print(coverage.text(table))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(coverage.as_json(good, table), indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(coverage.markdown(table))
    lacking = coverage.missing(table, required, args.flow)
    for flow, kinds in lacking.items():
        endpoints = ", ".join(r.endpoint for r in table if r.flow == flow) or "no endpoint declared"
        print(f"\n{flow}: no scripted step serves {', '.join(kinds)} (its endpoints: {endpoints})", file=sys.stderr)
    return EXIT_FAILED if lacking else EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness._errors import UsageError
    from harness.scenario.schema import dumps, scenario_schema, strategies_schema

    text = dumps(strategies_schema() if args.strategies else scenario_schema())
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc}") from None
    print(f"wrote {args.out}")
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    good, bad = _load(args.paths)
    runs = sum(len(doc.cases()) for doc in good)
    variants = f" ({runs} rows with their strategy variants, as `harness run` runs them)" if runs > len(good) else ""
    print(f"{len(good)} scenario(s) valid{variants}, {len(bad)} invalid")
    return EXIT_INVALID if bad else EXIT_OK


def _run(args: argparse.Namespace) -> int:
    import time

    started, verbose = time.perf_counter(), args.verbose
    # the server (or the workers' servers) starts while the scenarios load
    runner = _runner(args, real_time=args.real_time, transport=args.transport)
    try:
        good, bad = _load(args.paths)
        from harness.checking.verdict import Result
        from harness.parallel import Failed, ScenarioRef, run_case
        from harness.report.results import table, write_json

        cases = selected([(doc.name, case) for doc in good for case in doc.cases()], args.name)
        jobs = [(ScenarioRef.of(scenario, label, policy), verbose) for label, scenario, policy in cases]
        with _progress("run", len(jobs), show=not verbose) as tick:
            values = runner.map(run_case, jobs, tick)
        results: list[Result] = [
            Result.of(scenario, None, [], error=str(value), label=label) if isinstance(value, Failed) else value
            for (label, scenario, _), value in zip(cases, values, strict=True)
        ]
    finally:
        runner.close()
    if results:  # an invalid file alone: its problems, and no empty table
        print(table(results))
    for r in results:
        if not r.passed:
            print(f"\n{r.name} ({r.file}:{r.line}): {r.verdict}")
            for f in r.failures:
                print(f"  {f}")
    passed = sum(r.passed for r in results)
    skipped = sum(r.skipped is not None for r in results)
    also = f", {skipped} skipped (for another Prefect)" if skipped else ""
    print(
        f"\n{passed - skipped}/{len(results)} scenario(s) passed{also}, {len(bad)} invalid, "
        f"{time.perf_counter() - started:.1f} s"
    )
    if args.json:
        write_json(results, args.json)
    if bad:
        return EXIT_INVALID
    return EXIT_OK if passed == len(results) else EXIT_FAILED


def selected(cases: list[tuple[str, Any]], patterns: Sequence[str] | None) -> list[Any]:
    """The cases (``(scenario name, (label, scenario, policy))``) that ``patterns`` select: a scenario's exact
    name (its strategy variants with it), a variant's label, or a glob on labels; all without patterns. A
    pattern that selects nothing is a usage error naming the nearest names."""
    import fnmatch

    from harness._errors import UsageError
    from harness.scenario.problems import did_you_mean

    if not patterns:
        return [case for _, case in cases]
    out = []
    for name, case in cases:
        label = case[0]
        if any(p in (name, label) or fnmatch.fnmatchcase(label, p) for p in patterns):
            out.append(case)
    labels = [case[0] for _, case in cases]
    for p in patterns:
        if not any(p in (name, case[0]) or fnmatch.fnmatchcase(case[0], p) for name, case in cases):
            raise UsageError(f"--name {p!r} selects no scenario{did_you_mean(p, labels)}")
    return out


def _compare(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from harness._errors import UsageError
    from harness.scenario.loader import load_policies
    from harness.scenario.strategy import resolve

    try:
        defined = load_policies(args.strategies_file) if args.strategies_file else {}
        policies = [resolve(name.strip(), defined) for name in args.strategies.split(",") if name.strip()]
    except UsageError:
        raise
    except (KeyError, ValueError, OSError) as exc:
        raise UsageError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    if args.seeds < 1:
        raise UsageError("{seeds} must be at least 1", "seeds")
    runner = _runner(args)
    try:
        good, bad = _load(args.paths)
        if bad:
            return EXIT_INVALID
        from harness.compare import compare, plan
        from harness.report.comparison import compare_json, compare_markdown, compare_table
        from harness.report.html import compare_html

        total = sum(len(seeds) for _, seeds in plan(good, args.seeds)) * len(policies)
        with _progress("compare", total) as tick, contextlib.redirect_stdout(io.StringIO()):
            cells = compare(runner, good, policies, args.seeds, tick=tick)
    finally:
        runner.close()
    print(compare_table(cells))
    print("\nstrategies:")
    for p in policies:
        print(f"  {p.name:22} {p.task_options()}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(compare_json(cells, policies, args.seeds), indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(compare_markdown(cells, policies, args.seeds))
    if args.html:
        Path(args.html).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html).write_text(compare_html(cells, policies, args.seeds))
    return EXIT_OK


def _runner(args: argparse.Namespace, **session: Any) -> Any:
    """Where the runs go, started: this process's session, N worker processes, or a Dask cluster.

    The one place a command's session is made: ``--timeout``, ``--workers``, ``--dask`` and ``--verbose``
    mean the same for every command that has them.
    """
    from harness._errors import UsageError

    workers, dask, verbose = getattr(args, "workers", 1), getattr(args, "dask", None), getattr(args, "verbose", False)
    session["time_limit"] = args.timeout or None
    if workers < 1:
        raise UsageError("{workers} must be at least 1", "workers")
    if dask is not None:
        try:
            from harness.parallel.cluster import Dask
        except ImportError as exc:
            raise UsageError(
                f"{{dask}} needs Dask's distributed scheduler ({exc}): pip install 'prefect-fault-harness[dask]'",
                "dask",
            ) from None
        return Dask(dask, workers, verbose=verbose, **session)
    if workers > 1:
        from harness.parallel import Local

        return Local(workers, verbose=verbose, **session)
    from harness.parallel import Serial

    return Serial(_started(**session))


def _started(**options: Any) -> Any:
    """A session in this process, its server starting at once."""
    from harness.run.session import Session

    session = Session(**options)
    session.start()
    return session


@contextlib.contextmanager
def _session(args: argparse.Namespace) -> Iterator[Any]:
    """The session of a command that runs its flows here, one after another (explore, record), closed after."""
    session = _started(time_limit=args.timeout or None)
    try:
        yield session
    finally:
        session.close()


@contextlib.contextmanager
def _progress(label: str, total: int, show: bool = True) -> Iterator[Callable[[], None]]:
    """One progress bar for every run, wherever it runs: on stderr (stdout is the report), only on a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    console = Console(file=sys.stderr)
    with Progress(*columns, console=console, transient=False, disable=not (show and console.is_terminal)) as progress:
        bar = progress.add_task("runs", total=total)
        yield lambda: progress.advance(bar)


def _explore(args: argparse.Namespace) -> int:
    import time

    from harness._errors import UsageError
    from harness.explore import describe, explore, import_note, parse_invariant, write

    try:
        invariant = parse_invariant(args.invariant)
    except UsageError as exc:
        raise UsageError(f"{{invariant}}: {exc}", "invariant") from None
    if args.budget < 1 or args.max_faults < 1 or args.shrink_runs < 0:
        raise UsageError(
            "{budget} and {max_faults} must be at least 1, {shrink_runs} at least 0",
            "budget",
            "max_faults",
            "shrink_runs",
        )
    started = time.perf_counter()
    with _session(args) as session:
        scenario = _explored_scenario(args)
        if scenario is None:
            return EXIT_INVALID
        print(f"exploring {scenario.name!r}{_scenario_note(args)} for {invariant}")
        with contextlib.redirect_stdout(io.StringIO()):  # the flows' own prints
            found = explore(
                session,
                scenario,
                invariant,
                budget=args.budget,
                seed=args.seed,
                max_faults=args.max_faults,
                shrink_runs=args.shrink_runs,
                shrink_seconds=args.shrink_seconds,
            )
    for line in describe(found):
        print(line)
    print(f"total {time.perf_counter() - started:.1f} s")
    if found.finding is None:
        return EXIT_OK
    path = write(found, args.out, command=_explore_command(args))
    print(f"wrote {path}: commit it to keep this failure in CI (xfail), or fix the flow")
    from pathlib import Path

    if Path(args.out).resolve().is_relative_to(Path("scenarios").resolve()):
        print(f"note: {args.out} is under scenarios/: the next `harness run` and `pytest` run it too")
    note = import_note(scenario, args.out)
    if note:
        print(note)
    return EXIT_FAILED


def _crashes(args: argparse.Namespace) -> int:
    import time

    from harness._errors import UsageError
    from harness.crashes import as_markdown, sweep, table, to_json, write
    from harness.scenario.strategy import resolve

    if args.reruns < 1:
        raise UsageError("{reruns} must be at least 1: a crash is judged by the run after it", "reruns")
    args.scenario, args.pick = args.name, "--name"
    scenario = _explored_scenario(args)
    if scenario is None:
        return EXIT_INVALID
    policy = None
    if args.strategy is not None:
        defined = {name: case.policy for name, case in scenario.strategies.items()}
        try:
            policy = resolve(args.strategy, defined)
        except KeyError as exc:
            raise UsageError(f"{{strategy}}: {exc.args[0]}", "strategy") from None
    started = time.perf_counter()
    label = f"crashes: {scenario.name}{_scenario_note(args)}"
    print(f"crashing {scenario.name!r}{_scenario_note(args)} at every point ({args.how}, {args.reruns} rerun(s))")
    with _session(args) as session, contextlib.ExitStack() as bars, contextlib.redirect_stdout(io.StringIO()):
        result = sweep(  # the flows' own prints go nowhere
            session,
            scenario,
            how=args.how,
            reruns=args.reruns,
            policy=policy,
            progress=lambda total: bars.enter_context(_progress(label, total)),
        )
    for line in table(result):
        print(line)
    print(f"{result.summary()}; total {time.perf_counter() - started:.1f} s")
    if args.json:
        Path(args.json).write_text(to_json(result))
    if args.markdown:
        Path(args.markdown).write_text(as_markdown(result))
    if not result.failing:
        return EXIT_OK
    if args.write:
        print(f"wrote {write(result, args.write)}: each scenario fails as its point does, until the flow is fixed")
    return EXIT_FAILED


def _explored_scenario(args: argparse.Namespace) -> Any:
    """The document ``--scenario`` names (default: the file's first), or None when the file is invalid (its
    problems printed)."""
    from harness._errors import UsageError

    good, bad = _load([args.scenario_file])
    if bad or not good:
        return None
    chosen = [s for s in good if args.scenario in (None, s.name)]
    if not chosen:
        names = ", ".join(repr(s.name) for s in good)
        raise UsageError(f"no scenario named {args.scenario!r} in {args.scenario_file} (it holds {names})")
    args.documents = len(good)
    return chosen[0]


def _scenario_note(args: argparse.Namespace) -> str:
    """Which document was taken, when the file holds several and none was named."""
    if args.scenario is None and args.documents > 1:
        return f" (document 1 of {args.documents}; pick another with {getattr(args, 'pick', '--scenario')})"
    return ""


def _explore_command(args: argparse.Namespace) -> str:
    """The command that reproduces this search, written into the scenario it found."""
    import shlex

    from harness.explore import SHRINK_RUNS
    from harness.generators import MAX_FAULTS

    options = [
        ("--scenario", args.scenario, None),
        ("--max-faults", args.max_faults, MAX_FAULTS),
        ("--shrink-runs", args.shrink_runs, SHRINK_RUNS),
    ]
    return shlex.join(
        [
            "harness",
            "explore",
            args.scenario_file,
            "--invariant",
            args.invariant,
            "--budget",
            str(args.budget),
            "--seed",
            str(args.seed),
            *(x for name, value, default in options if value != default for x in (name, str(value))),
        ]
    )


def _record(args: argparse.Namespace) -> int:
    import json
    import time

    from harness._errors import HarnessError, UsageError
    from harness.record import record

    try:
        parameters = json.loads(args.parameters)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--parameters is not valid JSON ({exc}); give an object, e.g. '{{\"n\": 3}}'") from None
    if not isinstance(parameters, dict):
        kind = type(parameters).__name__
        raise UsageError(f"--parameters must be a JSON object of keyword arguments, got a {kind}")
    started = time.perf_counter()
    quiet = contextlib.nullcontext() if args.verbose else contextlib.redirect_stdout(io.StringIO())
    try:
        with _session(args) as session, quiet:  # the flow's own prints kept out of the report
            done = record(
                session,
                args.flow,
                parameters,
                args.out,
                name=args.name,
                redact=args.redact,
                max_body=args.max_body,
                connect_to=args.connect_to,
                force=args.force,
                command=_record_command(args),
            )
    except HarnessError as exc:  # on one line, as every message of record
        message = exc.as_flags() if isinstance(exc, UsageError) else str(exc)
        raise UsageError(message.replace("\n", " ")) from None
    took = time.perf_counter() - started
    print(
        f"recorded {done.requests} request(s) to {done.endpoints} endpoint(s) in {took:.1f} s; flow {done.flow_state}"
    )
    for note in done.notes:
        print(f"note: {note}")
    print(f"wrote {done.path}: it replays with the API gone (harness run {done.path})")
    return EXIT_OK


def _record_command(args: argparse.Namespace) -> str:
    """The command that made a recording, written into its header (secrets in it are replaced there)."""
    import shlex

    from harness.record import DEFAULT_MAX_BODY

    words = ["harness", "record", args.flow, "--parameters", args.parameters, "--out", args.out]
    if args.name:
        words += ["--name", args.name]
    if args.redact:
        words += ["--redact", *args.redact]
    if args.max_body != DEFAULT_MAX_BODY:
        words += ["--max-body", str(args.max_body)]
    for pin in args.connect_to:
        words += ["--connect-to", pin]
    return shlex.join(words)


if __name__ == "__main__":
    raise SystemExit(main())
