#!/usr/bin/env python3
"""Mutation testing of the code that decides a run's outcome, with mutmut.

    .venv/bin/python scripts/mutation.py                   # every group, watchers last
    .venv/bin/python scripts/mutation.py callbacks runs    # some groups
    .venv/bin/python scripts/mutation.py --again taskgraph # only what the last runs did not kill
    .venv/bin/python scripts/mutation.py --report          # the table of the last runs, no new run
    .venv/bin/python scripts/mutation.py --list            # the groups: files, functions, tests

Needs the ``mutation`` extra (mutmut); run after ``scripts/test`` set up .venv, and it
installs the extra itself when mutmut is missing. Not part of ``.ci/run``: on two cores a
group takes from ten minutes (taskgraph) to well over an hour (runs, whose tests each start
the service); docs/TESTING.md has the table.

A *group* is a few modules that decide one kind of outcome (callback verification,
settling, run start and status, deadlines, task-graph validation, watchers), the
functions in them worth mutating where a module is large, and a fixed set of fast
test modules that exercise them. mutmut runs that set once unmutated to learn which
tests call each function, then runs each mutant against only those tests, fastest
first, stopping at the first failure. That keeps a mutant to seconds where the
whole suite takes minutes.

Each group works in ``build/mutation/<group>/`` (git-ignored): symlinks to the
project's folders and a pyproject.toml with the group's ``[tool.mutmut]`` table, so
groups keep their own results, and the project's pyproject.toml carries no mutmut
settings. mutmut writes its mutated copy under ``mutants/`` there; a survivor's diff
is ``cd build/mutation/<group> && ../../../.venv/bin/mutmut show <name>``. Results are
also kept in ``results.json`` there, per mutant with its function's hash, so that
``--again`` can rerun only what is not killed and a stopped run loses nothing.

The whole run is niced: other test runs on the machine keep their share of the CPU.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
#: What the mutated copy needs besides ``app/``: imported or read by the tests.
ALSO_COPY = ("pipelines", "steps", "tests", "notebooks", "examples", "scripts", "databricks.yml", "app.yaml")
#: Linked into each group's folder; mutmut copies them from there into ``mutants/``.
LINKED = ("app", *ALSO_COPY, "uv.lock")


@dataclass(frozen=True)
class Group:
    """Modules that decide one kind of outcome, and the tests that exercise them."""

    #: File -> the functions to mutate in it, as mutmut names them (``x_read_run``,
    #: ``xǁRuntimeǁstart_run``; globs allowed), or None for every function in the file.
    targets: dict[str, tuple[str, ...] | None]
    #: pytest arguments selecting the tests mutmut learns coverage from.
    tests: tuple[str, ...]
    #: Environment for the test runs (e.g. smaller floods: the same paths, fewer runs).
    env: dict[str, str] = field(default_factory=dict)


GROUPS: dict[str, Group] = {
    # Who may settle which promise (the HMAC token), the settle itself, and its refusals.
    "callbacks": Group(
        targets={
            "app/callback_tokens.py": None,
            "app/services/settling.py": None,
            "app/routers/callbacks.py": None,  # the HTTP handlers are decorated: mutmut leaves them
            "app/services/errors.py": (
                "xǁMissingTokenǁ*",
                "xǁTokenRefusedǁ*",
                "xǁNotAWaitǁ*",
                "xǁAlreadySettledǁ*",
                "xǁPromiseNotFoundǁ*",
                "xǁRunNotFoundǁ*",
            ),
            "app/durable/resonate_format.py": ("x_run_of", "x_is_root_id", "x_origin", "x_error_value"),
        },
        tests=(
            "tests/test_callback_signer.py",
            "tests/test_callback_settle.py",
            "tests/test_callbacks_and_inputs.py",
            "tests/test_security_callbacks.py",
            "tests/test_limits.py",
            "tests/test_observability.py",
            "tests/test_resonate_protocol.py",  # settles waits too, for the resonate CLI
            "tests/test_floods.py",
            "-k",
            "not postgres",
        ),
        env={"DARA_FLOOD_RUNS": "100"},
    ),
    # Starting a run (once per id) and what status a run's promises add up to.
    "runs": Group(
        targets={
            "app/services/starting.py": None,
            "app/runtime.py": ("xǁRuntimeǁstart_run",),
            # Not the list items, links and times: what a run's promises add up to.
            "app/services/run_status.py": (
                "x_read_run",
                "x_get_promise",
                "x__child",
                "x__only_waits_pending",
                "x_is_run",
                "x_promise_kind",
                "x__step",
                "x__outcome",
                "x_run_meta",
                "x__show_once",
                "x__databricks_run",
                "x__add_final_states",
            ),
            "app/services/reading.py": None,
            "app/services/errors.py": ("xǁPipelineNotFoundǁ*", "xǁBadParamsǁ*", "xǁIdTakenǁ*"),
            "app/durable/resonate_format.py": (
                "x_child_id",
                "x_detached_id",
                "x_is_root",
                "x_made_by",
                "x_stored_call",
                "x_error_message",
            ),
        },
        tests=(
            "tests/test_run_status.py",
            "tests/test_run_lifecycle.py",
            "tests/test_callbacks_and_inputs.py",
            "tests/test_security_callbacks.py",
            "tests/test_security_identity.py",  # who started a run
            "tests/test_capacity_queued.py",  # a run queued for room
            "tests/test_security_host_paths.py",  # params only DARA may set
            "tests/test_repair_window_view.py",  # a failed run held open for a repair
            "tests/test_floods.py",
            "-k",
            "not postgres",
        ),
        env={"DARA_FLOOD_RUNS": "100"},
    ),
    # Deadlines: a wait's own and the backend's sweep that times waits out.
    "deadlines": Group(
        targets={
            # A wait's deadline, its timing out, and a failing pipeline's waits abandoned.
            "app/durable/context.py": (
                "xǁContextǁ__init__",
                "xǁContextǁpromise",
                "xǁContextǁabandon_waits",
                "xǁContextǁ_defaults",
                "xǁWaitǁ_value",
            ),
            "app/durable/in_process.py": (
                "xǁ_Timeoutsǁ*",
                "xǁIndexedServerStateǁpromise_create",
                "xǁIndexedServerStateǁtick",
                "xǁIndexedServerStateǁset_p_timeout",
                "xǁIndexedServerStateǁdel_p_timeout",
                "xǁIndexedServerStateǁset_t_timeout",
                "xǁIndexedServerStateǁdel_t_timeout",
            ),
        },
        tests=(
            "tests/test_driver.py",
            "tests/test_in_process_server.py",
            "tests/test_in_process_timeouts.py",
            "tests/test_run_lifecycle.py",
            "-k",
            "not postgres",
        ),
    ),
    # Whether a task graph may become a job: parsing, problems, cycles, run order.
    "taskgraph": Group(
        targets={
            "app/taskgraph/validate.py": None,
            "app/taskgraph/preview.py": ("x_levels", "x_order"),
            "app/taskgraph/models.py": (
                "x__compute_kind",
                "x__as_text",
                "x__parameters",
                "x__seconds",
                "x_parse_compute",
                "x_parse_tasks",
                "x_read_document",
                "x__unique_keys",
                "xǁ_UniqueKeyLoaderǁconstruct_mapping",
                "x__conventional",
            ),
        },
        # Not the real deploy of the example, nor the CLI in its own process: slow, and
        # checked by the whole suite; a validation mutant is caught by the unit tests.
        tests=(
            "tests/test_taskgraph.py",
            "tests/test_taskgraph_problems.py",
            "-k",
            "not example_deploys and not cli_",
        ),
    ),
    # How a Databricks run's end settles or fails its wait. Not how often the watchers look
    # or list (watch_run's pacing, the listing's call budget): that is cost, measured by
    # scripts/bench_watch.py, not an outcome.
    "watchers": Group(
        targets={
            "app/watchers.py": (
                "x__look",
                "x__final_state",
                "x__deadline_near",
                "x__seconds_left",
                "x_check_run",
                "x_ended_state",
                "x_repairable_until",
                "x_run_report",
                "x_report_end",
            ),
            "app/active_runs.py": (
                "xǁActiveRunsǁis_active",
                "xǁActiveRunsǁ_current",
                "xǁActiveRunsǁsaw_ended",
                "xǁActiveRunsǁended_as",
                "xǁActiveRunsǁsaw_active",
            ),
            "app/exit_values.py": None,
        },
        tests=(
            "tests/test_run_watch_looks.py",  # each decision of a look, in milliseconds
            "tests/test_run_watch.py",
            "tests/test_run_lifecycle.py",
            "tests/test_notebook_errors.py",
            "tests/test_run_events.py",  # the paced listing and the checks run events start
            "tests/test_orphaned_runs.py",
            "tests/test_repair.py",
            "tests/test_repair_window_view.py",
            "-k",
            "not postgres",
        ),
    ),
}

#: mutmut's exit codes, as this report counts them. A failing test kills; so does a
#: hang that mutmut itself timed out (its tests could not finish: the mutant was seen).
KILLED = {1, 3, 36, -24, 24, 152}
OUTCOME = {0: "survived", 33: "no tests", 5: "no tests"}


def module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")


def globs(group: Group) -> list[str]:
    """mutmut's names for the mutants of ``group``' functions."""
    names = []
    for path, functions in group.targets.items():
        for function in functions or ("x*",):
            names.append(f"{module_of(path)}.{function}__mutmut_*")
    return names


def toml_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def prepare(name: str, group: Group) -> Path:
    """The group's folder: links to the project, and its pyproject.toml with [tool.mutmut]."""
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    for entry in LINKED:
        link = folder / entry
        if not link.is_symlink() and (ROOT / entry).exists():
            link.symlink_to(ROOT / entry)
    settings = "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["app"]',
            f"only_mutate = {toml_list(list(group.targets))}",
            f"also_copy = {toml_list(ALSO_COPY)}",
            f"pytest_add_cli_args_test_selection = {toml_list(group.tests)}",
            # No cache folder in the shared tree. A mutant that hangs fails its test at
            # this limit, well inside mutmut's own (below), so it counts as killed.
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "--timeout=60"]',
            # A mutant's wall-clock limit is (its tests' time + this) x 15; service start-up
            # (not counted in a test's time) needs the headroom on a loaded machine.
            "timeout_constant = 6.0",
            # Fork each mutant from a clean server process, not from one that ran the suite.
            'process_isolation = "forkserver"',
            'on_dependency_change = "ignore"',
            "",
        ]
    )
    (folder / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + settings)
    return folder


def ensure_mutmut() -> Path:
    """The mutmut command of this interpreter's environment, installing the extra if missing."""
    if importlib.util.find_spec("mutmut") is None:
        print("scripts/mutation.py: installing the mutation extra (mutmut)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[mutation]"], check=True)
    return Path(sys.executable).parent / "mutmut"


def environment(group: Group) -> dict[str, str]:
    """The environment a group's tests run in, from the mutated copy."""
    env = {**os.environ, **group.env}
    # tests/postgres.py finds resonate-pg's schema beside the project; the copy is elsewhere.
    schema = ROOT.parent / "shared" / "resonate-pg" / "resonate.sql"
    if schema.is_file():
        env.setdefault("DARA_RESONATE_PG_SCHEMA", str(schema))
    return env


def run(name: str, group: Group, mutmut: Path, max_children: int, *, again: bool) -> None:
    folder = prepare(name, group)
    env = environment(group)
    if not again:
        mutmut_run(name, group, [str(mutmut), "run", "--max-children", str(max_children), *globs(group)], folder, env)
        return
    tried: set[str] = set()
    # Twice at most: mutmut makes the mutants of a function changed since the last run
    # only once it runs, so the first round can neither name nor run them.
    for _ in range(2):
        names = [m for m, (_, code) in outcomes(name, group).items() if code not in KILLED and m not in tried]
        if not names:
            break
        tried.update(names)
        mutmut_run(name, group, [str(mutmut), "run", "--max-children", str(max_children), *names], folder, env)


def mutmut_run(name: str, group: Group, command: list[str], folder: Path, env: dict[str, str]) -> None:
    print(f"== {name}: mutmut run of {len(command) - 4} name(s) over {', '.join(group.targets)}", flush=True)
    if subprocess.run(command, cwd=folder, env=env, check=False).returncode != 0:
        # Most often a selected test fails unmutated, which mutmut does not show.
        print(
            f"== {name}: mutmut stopped; are its tests green? .venv/bin/python -m pytest -x {' '.join(group.tests)}",
            file=sys.stderr,
        )


def outcomes(name: str, group: Group) -> dict[str, tuple[str, int | None]]:
    """Each mutant of ``group``' functions: (its file, mutmut's exit code for it, or None).

    mutmut forgets every result when a group's test selection changes, and a run of
    ``--again`` decides only some mutants; so each decided result is also kept in
    ``results.json`` with the hash of its function's code, and stands while that
    function is unchanged.
    """
    folder = WORK / name
    kept_path = folder / "results.json"
    kept = json.loads(kept_path.read_text()) if kept_path.is_file() else {}
    patterns = globs(group)
    found: dict[str, tuple[str, int | None]] = {}
    for path in group.targets:
        meta = folder / "mutants" / f"{path}.meta"
        if not meta.is_file():
            continue
        data = json.loads(meta.read_text())
        hashes = data.get("hash_by_function_name", {})
        for mutant, code in sorted(data["exit_code_by_key"].items()):
            if not any(fnmatch.fnmatchcase(mutant, pattern) for pattern in patterns):
                continue
            function_hash = hashes.get(mutant.rpartition(".")[2].rsplit("__mutmut_", 1)[0])
            if code is not None:
                kept[mutant] = {"code": code, "hash": function_hash}
            result = kept.get(mutant)
            found[mutant] = (path, result["code"] if result and result["hash"] == function_hash else None)
    if folder.is_dir():
        kept_path.write_text(json.dumps(kept, indent=1, sort_keys=True))
    return found


@dataclass
class Tally:
    total: int = 0
    killed: int = 0
    survivors: list[tuple[str, str]] = field(default_factory=list)  # (mutant, outcome)


def tally(name: str, group: Group) -> dict[str, Tally]:
    """Per file of ``group``: its selected mutants and what became of them."""
    tallies = {path: Tally() for path in group.targets}
    for mutant, (path, code) in outcomes(name, group).items():
        counts = tallies[path]
        counts.total += 1
        if code in KILLED:
            counts.killed += 1
        else:
            counts.survivors.append((mutant, "not run" if code is None else OUTCOME.get(code, f"exit {code}")))
    return tallies


def report(names: list[str]) -> int:
    """Print the table (markdown, as in docs/TESTING.md) and the survivors; 1 if over 5 %.

    The share is of the mutants that were run: a run stopped early leaves some not run.
    """
    rows, survivors, total, killed, unrun = [], [], 0, 0, 0
    for name in names:
        for path, counts in tally(name, GROUPS[name]).items():
            not_run = sum(outcome == "not run" for _, outcome in counts.survivors)
            surviving = counts.total - counts.killed - not_run
            run_ = counts.total - not_run
            share = f"{100 * surviving / run_:.1f} %" if run_ else "-"
            rows.append(f"| {name} | `{path}` | {counts.total} | {counts.killed} | {surviving} | {not_run} | {share} |")
            survivors += [(name, mutant, outcome) for mutant, outcome in counts.survivors]
            total, killed, unrun = total + counts.total, killed + counts.killed, unrun + not_run
    print("| group | module | mutants | killed | surviving | not run | surviving share |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    surviving = total - killed - unrun
    share = 100 * surviving / (total - unrun) if total - unrun else 0.0
    print(f"| **all** | | **{total}** | **{killed}** | **{surviving}** | **{unrun}** | **{share:.1f} %** |")
    if survivors:
        print("\nNot killed (see each with `mutmut show <name>` in build/mutation/<group>):")
        for group, mutant, outcome in survivors:
            if outcome != "not run":  # listed by the thousand when a run stopped early
                print(f"  {group}: {mutant} ({outcome})")
        outcomes = Counter(outcome for _, _, outcome in survivors)
        print("  " + ", ".join(f"{count} {outcome}" for outcome, count in outcomes.items()))
    return 1 if share > 5 or unrun else 0


def check(name: str, mutant: str, tests: list[str]) -> int:
    """Run ``tests`` against one mutant in group ``name``'s mutated copy, and record the
    outcome as mutmut does. For what mutmut could not map to a test (a classmethod's
    mutants: "no tests"), and for a test outside the group's selection that is too slow
    to add to it. The copy's tests are refreshed first; do not use it while the group runs.
    """
    folder = WORK / name / "mutants"
    for entry in ALSO_COPY:
        if (ROOT / entry).is_dir():
            shutil.copytree(ROOT / entry, folder / entry, dirs_exist_ok=True)
    env = environment(GROUPS[name])
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    # The tests must pass unmutated, or a failure says nothing about the mutant.
    if subprocess.run(command, cwd=folder, env={**env, "MUTANT_UNDER_TEST": ""}, check=False).returncode != 0:
        print(f"== {name}: {' '.join(tests)} fail unmutated in {folder}; nothing recorded", file=sys.stderr)
        return 1
    code = subprocess.run(command, cwd=folder, env={**env, "MUTANT_UNDER_TEST": mutant}, check=False).returncode
    for path in GROUPS[name].targets:
        meta_path = folder / f"{path}.meta"
        data = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if mutant in data.get("exit_code_by_key", {}):
            data["exit_code_by_key"][mutant] = code
            meta_path.write_text(json.dumps(data, indent=4))
            print(f"== {name}: {mutant}: {'killed' if code in KILLED else OUTCOME.get(code, f'exit {code}')}")
            return 0
    print(f"== {name}: no mutant {mutant}", file=sys.stderr)
    return 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "groups", nargs="*", metavar="group", help=f"of {', '.join(GROUPS)} (default: all, in that order)"
    )
    parser.add_argument("--report", action="store_true", help="print the table of the last runs; run nothing")
    parser.add_argument("--list", action="store_true", help="print each group's files, functions and tests")
    parser.add_argument("--again", action="store_true", help="rerun only the mutants the last runs did not kill")
    parser.add_argument(
        "--check",
        nargs="+",
        metavar=("MUTANT", "TEST"),
        help="with one group: run these tests against MUTANT and record the outcome",
    )
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    args, extra = parser.parse_known_args()  # pytest's own options may follow --check's tests
    if extra and not args.check:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if unknown := [name for name in args.groups if name not in GROUPS]:
        parser.error(f"no group {', '.join(unknown)}; the groups are {', '.join(GROUPS)}")
    names = args.groups or list(GROUPS)
    if args.check:
        if len(args.groups) != 1 or len(args.check) < 2:
            parser.error("--check takes one group, a mutant and the tests to run against it")
        return check(args.groups[0], args.check[0], [*args.check[1:], *extra])
    if args.list:
        for name in names:
            group = GROUPS[name]
            print(f"{name}:\n  mutants: {' '.join(globs(group))}\n  tests: {' '.join(group.tests)}")
        return 0
    if not args.report:
        os.nice(10)  # shared machines: the tests' servers and notebooks inherit it
        mutmut = ensure_mutmut()
        for name in names:
            run(name, GROUPS[name], mutmut, args.max_children, again=args.again)
    return report(names)


if __name__ == "__main__":
    sys.exit(main())
