"""Jobs from a task graph: loading, validation, job settings, preview, and a real deploy.

The last tests deploy ``examples/task_graph`` to the embedded local workspace and run
it, so the notebooks, the YAML and the job settings are checked by something that
executes them, not only by assertions about their shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from databricks.sdk import WorkspaceClient
from databricks.sdk.service import jobs
from databricks.sdk.service.sql import CreateWarehouseRequestWarehouseType
from databricks.sdk.service.workspace import ImportFormat, Language

from app.durable import StepInfo
from app.settings import PROJECT_ROOT, Settings
from app.taskgraph import (
    TaskGraph,
    TaskGraphError,
    job_settings,
    levels,
    order,
    preview,
    render_svg,
    render_text,
    validate,
    workspace_paths,
)
from app.workspace.client import workspace_client
from app.workspace.embedded import EmbeddedWorkspace
from steps import compute as compute_steps
from steps.jobs import upsert_job
from steps.task_graph_root import TaskGraphPathError, TaskGraphRoot, WorkspaceRoot
from steps.workspace_files import import_format, upload_task_files

EXAMPLE = PROJECT_ROOT / "examples" / "task_graph"
NOTEBOOK = "# Databricks notebook source\nprint('hi')\n"
SERVERLESS = {"serverless": {"environment_version": "1"}}


def graph_in(
    folder: Path,
    tasks: list[dict[str, Any]],
    compute: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> TaskGraph:
    """A task graph on disk: every task's file exists (as a notebook) unless ``files`` says."""
    folder.mkdir(parents=True, exist_ok=True)
    if files is None:
        files = {task["file"]: NOTEBOOK for task in tasks if "file" in task}
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    return TaskGraph.from_data(compute if compute is not None else {"sl": SERVERLESS}, tasks, folder)


def task(name: str, *depends_on: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "file": f"{name}.py",
        "compute": "sl",
        "depends_on": list(depends_on),
    } | fields


def problems_of(graph: TaskGraph) -> list[str]:
    with pytest.raises(TaskGraphError) as caught:
        validate(graph)
    return caught.value.problems


# -- validation, problem by problem -------------------------------------------------------


def test_a_sound_graph_passes(tmp_path: Path) -> None:
    graph = graph_in(tmp_path, [task("a"), task("b", "a")])
    assert validate(graph) is graph


def test_unknown_compute_is_named_with_a_suggestion(tmp_path: Path) -> None:
    graph = graph_in(tmp_path, [task("a", compute="etl-smal")], {"etl-small": SERVERLESS})
    assert problems_of(graph) == ["task 'a' uses unknown compute 'etl-smal'; did you mean 'etl-small'?"]


def test_missing_file(tmp_path: Path) -> None:
    graph = graph_in(tmp_path, [task("a"), task("b")], files={"a.py": NOTEBOOK})
    assert problems_of(graph) == ["task 'b': file 'b.py' is not in the task graph's folder"]


def test_duplicate_task_names(tmp_path: Path) -> None:
    graph = graph_in(tmp_path, [task("a"), task("b"), task("a")])
    assert problems_of(graph) == ["task name 'a' is used by 2 tasks (entries #1, #3); rename all but one"]


def test_a_cycle_is_named_in_execution_order(tmp_path: Path) -> None:
    # a waits for c, b for a, c for b: a -> b -> c -> a
    graph = graph_in(tmp_path, [task("a", "c"), task("b", "a"), task("c", "b"), task("d")])
    [problem] = problems_of(graph)
    assert problem.startswith("dependency cycle: a -> b -> c -> a ")


def test_a_task_waiting_for_itself_is_a_cycle(tmp_path: Path) -> None:
    [problem] = problems_of(graph_in(tmp_path, [task("a", "a")]))
    assert problem.startswith("dependency cycle: a -> a ")


def test_a_task_downstream_of_a_cycle_can_never_run(tmp_path: Path) -> None:
    graph = graph_in(tmp_path, [task("a", "b"), task("b", "a"), task("c", "b"), task("d", "c")])
    found = problems_of(graph)
    assert found[0].startswith("dependency cycle: a -> b -> a ")
    assert found[1:] == [
        "task 'c' can never run: it waits on 'b', which is part of a cycle",
        "task 'd' can never run: it waits on 'b', which is part of a cycle",
    ]


def test_unknown_dependency(tmp_path: Path) -> None:
    graph = graph_in(tmp_path, [task("extract"), task("load", "extarct")])
    assert problems_of(graph) == ["task 'load' depends on unknown task 'extarct'; did you mean 'extract'?"]


def test_compute_of_the_wrong_kind(tmp_path: Path) -> None:
    compute = {"sl": SERVERLESS, "wh": {"warehouse_id": "w1"}}
    graph = graph_in(
        tmp_path,
        [
            {"name": "q", "file": "q.sql", "compute": "sl"},
            {"name": "n", "file": "n.py", "compute": "wh"},
        ],
        compute,
        files={"q.sql": "select 1", "n.py": NOTEBOOK},
    )
    assert problems_of(graph) == [
        (
            "task 'q' is a SQL file but compute 'sl' is serverless compute; "
            "SQL tasks run on a SQL warehouse (an entry with warehouse_id)"
        ),
        "task 'n' is a notebook task but compute 'wh' is a SQL warehouse; use a cluster or serverless compute entry",
    ]


def test_notebooks_need_the_source_header_and_python_files_must_lack_it(tmp_path: Path) -> None:
    graph = graph_in(
        tmp_path,
        [task("plain"), task("nb", format="python")],
        files={"plain.py": "print('no header')\n", "nb.py": NOTEBOOK},
    )
    found = problems_of(graph)
    assert "'plain.py' is not a notebook in source format" in found[0]
    assert "set format: python" in found[0]
    assert "'nb.py' is a notebook" in found[1] and "set format: notebook" in found[1]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    graph = graph_in(
        tmp_path,
        [
            task("a", "ghost"),
            task("b", compute="nowhere"),
            task("b"),
            task("c", "d"),
            task("d", "c"),
            task("e"),
        ],
        files={"a.py": NOTEBOOK, "b.py": NOTEBOOK, "c.py": NOTEBOOK, "d.py": NOTEBOOK},
    )
    with pytest.raises(TaskGraphError) as caught:
        validate(graph)
    found = caught.value.problems
    assert len(found) == 5, found
    assert found[0].startswith("task name 'b' is used by 2 tasks")
    assert found[1].startswith("task 'b' uses unknown compute 'nowhere'")
    assert found[2] == "task 'e': file 'e.py' is not in the task graph's folder"
    assert found[3].startswith("task 'a' depends on unknown task 'ghost'")
    assert found[4].startswith("dependency cycle: c -> d -> c ")
    message = str(caught.value)
    assert message.startswith("the task graph has 5 problems; fix and retry:\n")
    assert all(f"  - {problem}" in message for problem in found)


def test_an_empty_task_list(tmp_path: Path) -> None:
    assert problems_of(TaskGraph.from_data({"sl": SERVERLESS}, [], tmp_path)) == [
        "the task list is empty; add at least one task"
    ]


# -- parsing -----------------------------------------------------------------------------


def parse_problems(compute: Any, tasks: Any) -> list[str]:
    with pytest.raises(TaskGraphError) as caught:
        TaskGraph.from_data(compute, tasks)
    return caught.value.problems


def test_malformed_entries_are_located_by_file_entry_and_field() -> None:
    found = parse_problems(
        {
            "etl": {"spark_version": "15.4", "num_worker": 2},
            "odd": {"warehouse_id": "w", "existing_cluster_id": "c"},
            "bad name": SERVERLESS,
        },
        [
            {"name": "a", "file": "a.py", "compute": "etl", "retries": -1},
            {"name": "b", "file": "../b.py", "compute": "etl", "timeout": "soon"},
            {"name": "c", "file": "c.txt", "compute": "etl"},
            {"name": "d", "file": "d.py", "compute": "etl", "parameters": ["x"]},
        ],
    )
    assert found[:3] == [
        (
            "compute: etl: unknown cluster setting(s) num_worker; a new cluster takes the fields "
            "of the Clusters API (spark_version, node_type_id, num_workers, autoscale, "
            "spark_conf, ...)"
        ),
        (
            "compute: odd: a compute entry must be exactly one of: a new cluster spec (with "
            "spark_version), {existing_cluster_id: ...}, {warehouse_id: ...} or "
            "{serverless: {environment_version: ...}}"
        ),
        (
            "compute: bad name.(name): 'bad name' is not a valid name: start with a letter, then "
            "letters, digits, '_' or '-' (at most 100 characters)"
        ),
    ]
    assert found[3] == "tasks: task #1 ('a').retries: Input should be greater than or equal to 0"
    assert found[4].startswith("tasks: task #2 ('b').file: file '../b.py' must be a path inside")
    assert found[5].startswith("tasks: task #2 ('b').timeout: timeout 'soon' is not a duration")
    assert found[6] == ("tasks: task #3 ('c'): cannot tell the format of 'c.txt'; set format: notebook, python or sql")
    assert found[7].startswith("tasks: task #4 ('d'): parameters of a notebook task are named")
    assert len(found) == 8


def test_broken_documents_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "compute.json").write_text('{"a": {"serverless": {}}, "a": {}}')
    (tmp_path / "tasks.yaml").write_text("- name: x\n  file: [unclosed\n")
    with pytest.raises(TaskGraphError) as caught:
        TaskGraph.from_folder(tmp_path)
    first, second = caught.value.problems
    assert first == "compute.json: key 'a' appears twice in the same object; names must be unique"
    assert second.startswith("tasks.yaml: invalid YAML: ")
    assert "line 2" in second


def test_a_yaml_boolean_as_parameter_name_is_explained() -> None:
    with pytest.raises(TaskGraphError) as caught:
        TaskGraph.from_text("sl: {warehouse_id: w}", "- {name: a, file: a.sql, compute: sl, parameters: {on: 1}}")
    assert caught.value.problems == [
        (
            "tasks: task #1 ('a').parameters: parameter name True is not text; quote it (YAML reads "
            "unquoted yes/no/on/off/true/false as booleans and digits as numbers)"
        )
    ]


def test_duplicate_yaml_keys_are_refused() -> None:
    with pytest.raises(TaskGraphError) as caught:
        TaskGraph.from_text("a:\n  warehouse_id: x\na:\n  warehouse_id: y\n", "[]")
    assert "key 'a' appears twice" in caught.value.problems[0]


def test_scalars_become_strings_and_durations_seconds() -> None:
    graph = TaskGraph.from_text(
        "sl: {serverless: {environment_version: 1}}",
        "- {name: a, file: a.py, compute: sl, timeout: 1h30m,   parameters: {n: 10, x: 1.5, dry: no}}",
    )
    (spec,) = graph.tasks
    assert spec.parameters == {"n": "10", "x": "1.5", "dry": "false"}
    assert spec.timeout == 5400
    assert graph.compute["sl"].serverless.environment_version == "1"  # type: ignore[union-attr]


# -- JSON, YAML, folders ---------------------------------------------------------------


COMPUTE = {
    "etl-small": {
        "spark_version": "15.4.x-scala2.12",
        "node_type_id": "i3.xlarge",
        "num_workers": 2,
    },
    "shared": {"existing_cluster_id": "0123-456789-abc"},
    "reporting": {"warehouse_id": "wh-1"},
    "sl": SERVERLESS,
}
TASKS = [
    {"name": "extract", "file": "extract.py", "compute": "etl-small", "parameters": {"n": "3"}},
    {
        "name": "load",
        "file": "jobs/load.py",
        "format": "python",
        "compute": "shared",
        "depends_on": ["extract"],
        "parameters": {"mode": "append"},
        "retries": 2,
        "timeout": 600,
    },
    {
        "name": "views",
        "file": "sql/views.sql",
        "compute": "reporting",
        "depends_on": ["load"],
        "parameters": {"day": "today"},
    },
    {"name": "notify", "file": "notify.py", "compute": "sl", "depends_on": ["extract", "load"]},
]
FILES = {
    "extract.py": NOTEBOOK,
    "jobs/load.py": "print('load')\n",
    "sql/views.sql": "select 1",
    "notify.py": NOTEBOOK,
}


def test_json_and_yaml_give_the_same_graph(tmp_path: Path) -> None:
    from_json = TaskGraph.from_text(json.dumps(COMPUTE), json.dumps(TASKS), tmp_path)
    from_yaml = TaskGraph.from_text(yaml.safe_dump(COMPUTE), yaml.safe_dump(TASKS), tmp_path)
    assert from_json == from_yaml
    assert from_json.tasks[1].parameters == {"mode": "append"}
    paths = workspace_paths(from_json, "/Workspace/Shared/x")
    assert job_settings(from_json, "x", paths) == job_settings(from_yaml, "x", paths)


def test_folder_convention_finds_either_format(tmp_path: Path) -> None:
    graph_in(tmp_path, [], files=FILES)
    (tmp_path / "compute.yml").write_text(yaml.safe_dump(COMPUTE))
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": TASKS}))
    graph = validate(TaskGraph.from_folder(tmp_path))
    assert [t.name for t in graph.tasks] == ["extract", "load", "views", "notify"]
    assert graph.folder == tmp_path.resolve()
    assert graph == validate(TaskGraph.from_data(COMPUTE, TASKS, tmp_path))


def test_folder_convention_explains_missing_and_ambiguous_files(tmp_path: Path) -> None:
    (tmp_path / "compute.yaml").write_text("{}")
    (tmp_path / "compute.json").write_text("{}")
    with pytest.raises(TaskGraphError) as caught:
        TaskGraph.from_folder(tmp_path)
    assert caught.value.problems == [
        f"{tmp_path}: both compute.yaml and compute.json exist; keep one of them",
        f"{tmp_path}: no tasks.yaml / tasks.yml / tasks.json found; add one or pass its path",
    ]


def test_explicit_files_override_the_convention(tmp_path: Path) -> None:
    graph_in(tmp_path / "project", [], files=FILES)
    (tmp_path / "c.json").write_text(json.dumps(COMPUTE))
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(TASKS))
    graph = TaskGraph.from_folder(tmp_path / "project", compute=tmp_path / "c.json", tasks=tmp_path / "t.yaml")
    assert validate(graph).folder == (tmp_path / "project").resolve()


# -- job settings ---------------------------------------------------------------------------


def test_job_settings_map_compute_formats_dependencies_retries_and_timeouts(tmp_path: Path) -> None:
    graph = validate(graph_in(tmp_path, TASKS, COMPUTE, FILES))
    paths = workspace_paths(graph, "/Workspace/Shared/etl/")
    assert paths["jobs/load.py"] == "/Workspace/Shared/etl/jobs/load.py"
    settings = job_settings(graph, "etl", paths)
    by_key = {t.task_key: t for t in settings.tasks or []}
    assert [t.task_key for t in settings.tasks or []] == ["extract", "load", "notify", "views"]

    extract = by_key["extract"]
    assert extract.job_cluster_key == "etl-small" and extract.depends_on is None
    assert extract.notebook_task == jobs.NotebookTask(
        notebook_path="/Workspace/Shared/etl/extract.py", base_parameters={"n": "3"}
    )
    assert extract.max_retries is None and extract.timeout_seconds is None  # defaults not sent
    [cluster] = settings.job_clusters or []
    assert cluster.job_cluster_key == "etl-small"
    assert cluster.new_cluster.as_dict() == COMPUTE["etl-small"]

    load = by_key["load"]
    assert load.existing_cluster_id == "0123-456789-abc"
    assert load.spark_python_task == jobs.SparkPythonTask(
        python_file="/Workspace/Shared/etl/jobs/load.py", parameters=["--mode", "append"]
    )
    assert load.depends_on == [jobs.TaskDependency(task_key="extract")]
    assert (load.max_retries, load.timeout_seconds) == (2, 600)

    views = by_key["views"]
    assert views.sql_task == jobs.SqlTask(
        warehouse_id="wh-1",
        file=jobs.SqlTaskFile(path="/Workspace/Shared/etl/sql/views.sql"),
        parameters={"day": "today"},
    )
    assert views.job_cluster_key is None and views.existing_cluster_id is None

    notify = by_key["notify"]
    assert (notify.environment_key, notify.disable_auto_optimization) == ("sl", True)
    assert [d.task_key for d in notify.depends_on or []] == ["extract", "load"]
    assert [e.as_dict() for e in settings.environments or []] == [
        {"environment_key": "sl", "spec": {"environment_version": "1"}}
    ]
    assert jobs.JobSettings.from_dict(settings.as_dict()).as_dict() == settings.as_dict()


def test_unused_compute_is_left_out_of_the_job(tmp_path: Path) -> None:
    compute = {"sl": SERVERLESS, "big": COMPUTE["etl-small"], "other": SERVERLESS}
    graph = validate(graph_in(tmp_path, [task("a")], compute))
    settings = job_settings(graph, "j", workspace_paths(graph, "/Workspace/Shared/j"))
    assert settings.job_clusters is None
    assert [e.environment_key for e in settings.environments or []] == ["sl"]


def test_job_settings_refuse_files_without_a_workspace_path(tmp_path: Path) -> None:
    graph = validate(graph_in(tmp_path, [task("a"), task("b")]))
    with pytest.raises(KeyError, match=r"no workspace path for b\.py"):
        job_settings(graph, "j", {"a.py": "/Workspace/Shared/a.py"})


# -- preview --------------------------------------------------------------------------------


def diamond(folder: Path) -> TaskGraph:
    return validate(
        graph_in(
            folder,
            [
                task("report", "right", "left"),
                task("right", "root"),
                task("root"),
                task("left", "root"),
            ],
        )
    )


def test_order_is_by_level_and_stable_within_a_level(tmp_path: Path) -> None:
    graph = diamond(tmp_path)
    assert levels(graph) == [["root"], ["right", "left"], ["report"]]
    assert order(graph) == ["root", "right", "left", "report"]


def test_text_preview_lists_levels_and_waits(tmp_path: Path) -> None:
    assert render_text(diamond(tmp_path)) == (
        "4 tasks in 3 levels (tasks in a level run in parallel):\n"
        "  1. root    notebook root.py on sl\n"
        "  2. right   notebook right.py on sl  (after root)\n"
        "     left    notebook left.py on sl  (after root)\n"
        "  3. report  notebook report.py on sl  (after right, left)\n"
    )


def test_svg_preview_is_well_formed_with_a_box_per_task_and_an_arrow_per_edge(
    tmp_path: Path,
) -> None:
    graph = diamond(tmp_path)
    odd = graph_in(tmp_path / "odd", [task("odd", file='r&d "<1>".py')])
    assert 'r&amp;d "&lt;1&gt;".py' in render_svg(validate(odd))  # file names are escaped
    svg = ET.fromstring(render_svg(graph))
    ns = {"svg": "http://www.w3.org/2000/svg"}
    boxes = {g.get("data-task"): g for g in svg.iterfind("svg:g[@class='task']", ns)}
    assert set(boxes) == {"root", "left", "right", "report"}
    for name, box in boxes.items():
        assert box.find("svg:rect", ns) is not None
        assert name in [t.text for t in box.iterfind("svg:text", ns)]
    edges = {(p.get("data-from"), p.get("data-to")) for p in svg.iterfind("svg:path[@class='edge']", ns)}
    assert edges == {("root", "left"), ("root", "right"), ("left", "report"), ("right", "report")}
    x = {name: float(box.find("svg:rect", ns).get("x")) for name, box in boxes.items()}  # type: ignore[union-attr]
    assert x["root"] < x["left"] == x["right"] < x["report"]


def test_preview_bundles_order_text_and_svg(tmp_path: Path) -> None:
    shown = preview(diamond(tmp_path))
    assert shown.order == ["root", "right", "left", "report"]
    assert shown.text.startswith("4 tasks in 3 levels")
    assert shown.svg.startswith("<svg ")


def test_preview_of_a_cyclic_graph_names_the_cycle(tmp_path: Path) -> None:
    graph = graph_in(tmp_path, [task("a", "b"), task("b", "a")])
    with pytest.raises(TaskGraphError, match="dependency cycle: a -> b -> a"):
        levels(graph)


# -- workspace files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("n.py", b"# Databricks notebook source\nx = 1\n", (ImportFormat.SOURCE, Language.PYTHON)),
        ("q.sql", b"-- Databricks notebook source\nselect 1", (ImportFormat.SOURCE, Language.SQL)),
        ("s.py", b"import sys\n", (ImportFormat.RAW, None)),
        ("q.sql", b"select 1", (ImportFormat.RAW, None)),
        ("n.ipynb", b"{}", (ImportFormat.JUPYTER, None)),
    ],
)
def test_files_are_imported_as_notebooks_only_when_they_are_notebooks(
    name: str, content: bytes, expected: tuple[ImportFormat, Language | None]
) -> None:
    assert import_format(name, content) == expected


def test_upload_names_a_missing_file_before_any_call(tmp_path: Path) -> None:
    class NoCalls:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"unexpected API call: {name}")

    with pytest.raises(TaskGraphPathError, match=r"task file 'gone\.py' is not in folder '\.'"):
        upload_task_files(
            NoCalls(),  # type: ignore[arg-type]
            TaskGraphRoot(tmp_path),
            WorkspaceRoot("/Workspace/Shared"),
            ".",
            {"gone.py": "/Workspace/Shared/gone.py"},
        )


# -- the CLI ---------------------------------------------------------------------------------


def deploy_script(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "DARA_STATE_DIR": str(cwd / "state")}
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "deploy_job.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_dry_run_prints_the_job_without_calling_anything(tmp_path: Path) -> None:
    done = deploy_script(str(EXAMPLE), "--dry-run", "--name", "orders", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    settings = jobs.JobSettings.from_dict(json.loads(done.stdout))
    assert settings.name == "orders"
    assert [t.task_key for t in settings.tasks or []] == [
        "by_product",
        "by_region",
        "extract",
        "report",
    ]
    assert settings.tasks[0].notebook_task.notebook_path == "/Workspace/Shared/dara/orders/by_product.py"  # type: ignore[index,union-attr]
    assert "3 levels" in done.stderr
    assert not (tmp_path / "state").exists()  # no workspace was started


def test_cli_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    graph_in(tmp_path, [], files={"a.py": NOTEBOOK})
    (tmp_path / "compute.yaml").write_text(yaml.safe_dump({"sl": SERVERLESS}))
    (tmp_path / "tasks.yaml").write_text(yaml.safe_dump([task("a", "b"), task("b", "a", compute="gpu")]))
    done = deploy_script(str(tmp_path), "--dry-run", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "error: the task graph has 3 problems" in done.stderr
    for expected in (
        "unknown compute 'gpu'",
        "file 'b.py' is not in the task graph's folder",
        "dependency cycle: a -> b -> a",
    ):
        assert expected in done.stderr


# -- on the embedded local workspace ----------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkspaceClient]:
    embedded = EmbeddedWorkspace(tmp_path_factory.mktemp("taskgraph") / "workspace").start()
    try:
        yield workspace_client(Settings(_env_file=None, databricks_host=None), embedded)  # type: ignore[call-arg]
    finally:
        embedded.stop()


class Spy:
    """Counts calls to one API method while passing them through."""

    def __init__(self, target: Any, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = getattr(target, method)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(target, method, counted)


def deploy_example(w: WorkspaceClient, name: str) -> int:
    graph = validate(TaskGraph.from_folder(EXAMPLE))
    assert graph.folder is not None
    uploaded = upload_task_files(
        w,
        TaskGraphRoot(graph.folder),
        WorkspaceRoot("/Workspace/Shared"),
        ".",
        workspace_paths(graph, f"/Workspace/Shared/{name}"),
    )
    return upsert_job(w, job_settings(graph, name, uploaded))


def test_the_example_deploys_redeploys_unchanged_and_runs(
    workspace: WorkspaceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = workspace
    started = time.monotonic()
    job_id = deploy_example(w, "orders-e2e")
    deployed = time.monotonic()

    settings = w.jobs.get(job_id).settings
    assert settings is not None and settings.name == "orders-e2e"
    tasks = {t.task_key: t for t in settings.tasks or []}
    assert set(tasks) == {"extract", "by_region", "by_product", "report"}
    assert {d.task_key for d in tasks["report"].depends_on or []} == {"by_region", "by_product"}
    assert tasks["extract"].notebook_task.notebook_path == "/Workspace/Shared/orders-e2e/extract.py"  # type: ignore[union-attr]
    assert tasks["extract"].notebook_task.base_parameters == {"orders": "24", "seed": "7"}  # type: ignore[union-attr]
    assert (tasks["by_region"].max_retries, tasks["report"].timeout_seconds) == (1, 600)

    creates = Spy(w.jobs, "create", monkeypatch)
    assert deploy_example(w, "orders-e2e") == job_id
    assert creates.calls == 0
    assert w.jobs.get(job_id).settings == settings
    redeployed = time.monotonic()

    run = w.jobs.run_now(job_id).result(timeout=timedelta(minutes=3))
    ran = time.monotonic()
    assert run.state is not None and run.state.result_state == jobs.RunResultState.SUCCESS, run.state
    assert {t.task_key: t.state.result_state for t in run.tasks or [] if t.state} == {
        name: jobs.RunResultState.SUCCESS for name in tasks
    }
    ends = {t.task_key: t.end_time or 0 for t in run.tasks or []}
    begins = {t.task_key: t.start_time or 0 for t in run.tasks or []}
    assert ends["extract"] <= min(begins["by_region"], begins["by_product"])
    assert max(ends["by_region"], ends["by_product"]) <= begins["report"]
    print(
        f"\ne2e timings: deploy {deployed - started:.2f}s, redeploy {redeployed - deployed:.2f}s, "
        f"run {ran - redeployed:.2f}s"
    )


def test_redeploying_an_unchanged_serverless_job_sends_no_reset(
    workspace: WorkspaceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = deploy_example(workspace, "orders-noop")
    resets = Spy(workspace.jobs, "reset", monkeypatch)
    assert deploy_example(workspace, "orders-noop") == job_id
    assert resets.calls == 0


def test_compute_steps_on_the_local_workspace(workspace: WorkspaceClient) -> None:
    w = workspace
    info = StepInfo(id="run:1", run_id="run", deadline_ms=1)
    spec = {
        "spark_version": "spark35-local-v1",
        "num_workers": 1,
        "data_security_mode": "USER_ISOLATION",
    }
    cluster = compute_steps.create_cluster(w, info, spec)
    assert compute_steps.create_cluster(w, info, spec) == cluster  # a re-executed step
    assert compute_steps.cluster_state(w, cluster).ready
    compute_steps.update_cluster(w, cluster, spec | {"num_workers": 2})
    assert w.clusters.get(cluster).num_workers == 2
    compute_steps.terminate_cluster(w, cluster)
    stopped = compute_steps.cluster_state(w, cluster)
    assert (stopped.state, stopped.ready, stopped.failed) == ("TERMINATED", False, False)
    compute_steps.start_cluster(w, cluster)
    compute_steps.restart_cluster(w, cluster)
    assert compute_steps.cluster_state(w, cluster).ready

    warehouse = w.warehouses.create(
        name="tg",
        cluster_size="2X-Small",
        max_num_clusters=1,
        warehouse_type=CreateWarehouseRequestWarehouseType.PRO,
    ).response.id
    assert warehouse is not None
    compute_steps.stop_warehouse(w, warehouse)
    assert compute_steps.warehouse_state(w, warehouse).state == "STOPPED"
    compute_steps.start_warehouse(w, warehouse)
    assert compute_steps.warehouse_state(w, warehouse).ready


def test_resize_needs_one_kind_of_size() -> None:
    with pytest.raises(ValueError, match="either num_workers or both"):
        compute_steps.resize_cluster(None, "c", num_workers=2, min_workers=1, max_workers=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either num_workers or both"):
        compute_steps.resize_cluster(None, "c", min_workers=1)  # type: ignore[arg-type]
