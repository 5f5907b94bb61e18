"""app.yaml, databricks.yml and uv.lock: what Databricks will read, checked before it does.

No Databricks CLI runs here, so the bundle is checked with what databricks-bundles (the
bundle's Python support, on PyPI) offers: each resource is loaded into its typed model,
which refuses unknown fields, wrong types and unknown enum values. The top level, the
targets and the references between resources are checked against the keys the bundle
documents. app.yaml is held to its documented keys (``command``, ``env`` with ``name``
and ``value`` or ``valueFrom``), and every ``valueFrom`` must name a resource of the App.
The example jobs must be the jobs DARA's own task-graph code builds from their folders,
so the bundle and ``POST /jobs/deploy`` cannot drift apart.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from databricks.bundles.apps import App, AppConfig
from databricks.bundles.database_instances import DatabaseInstance
from databricks.bundles.jobs import Job
from databricks.bundles.secret_scopes import SecretScope

from app.settings import PROJECT_ROOT
from app.taskgraph import TaskGraph, job_settings, validate, workspace_paths
from app.workspace.deploy import DEMO_PARAMETERS, demo_job_settings

APP_YAML = PROJECT_ROOT / "app.yaml"
BUNDLE = PROJECT_ROOT / "databricks.yml"
#: Resource types this bundle may use, as databricks-bundles models them.
MODELS: dict[str, Any] = {
    "apps": App,
    "jobs": Job,
    "database_instances": DatabaseInstance,
    "secret_scopes": SecretScope,
}
#: Top-level mappings of a bundle and of a target, as the bundle's schema lists them.
ROOT_KEYS = {
    "artifacts",
    "bundle",
    "experimental",
    "include",
    "permissions",
    "presets",
    "python",
    "resources",
    "run_as",
    "scripts",
    "sync",
    "targets",
    "variables",
    "workspace",
}
TARGET_KEYS = {
    "artifacts",
    "bundle",
    "cluster_id",
    "compute_id",
    "default",
    "git",
    "mode",
    "permissions",
    "presets",
    "resources",
    "run_as",
    "sync",
    "variables",
    "workspace",
}
VARIABLE_KEYS = {"description", "default", "type", "lookup"}
REFERENCE = re.compile(r"\$\{([a-z_]+)\.([A-Za-z0-9_.-]+)\}")


def bundle() -> dict[str, Any]:
    return yaml.safe_load(BUNDLE.read_text())


def app_yaml() -> dict[str, Any]:
    return yaml.safe_load(APP_YAML.read_text())


def the_app(config: dict[str, Any]) -> dict[str, Any]:
    (app,) = config["resources"]["apps"].values()
    return app


def references(node: Any) -> list[tuple[str, str]]:
    """Every ``${kind.path}`` in a YAML tree, as (kind, path)."""
    if isinstance(node, dict):
        return [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return REFERENCE.findall(node) if isinstance(node, str) else []


# -- app.yaml --------------------------------------------------------------------------


def app_yaml_problems(config: Any) -> list[str]:
    """What in an app.yaml the Apps runtime does not document (empty: nothing)."""
    if not isinstance(config, dict):
        return ["app.yaml must be a mapping"]
    problems = [
        f"unknown key {key!r} (app.yaml has command and env)" for key in config if key not in ("command", "env")
    ]
    command = config.get("command")
    if not (isinstance(command, list) and command and all(isinstance(part, str) for part in command)):
        problems.append("command must be a non-empty list of strings (it runs without a shell)")
    for index, entry in enumerate(config.get("env") or []):
        if not isinstance(entry, dict):
            problems.append(f"env[{index}] must be a mapping")
            continue
        keys = set(entry)
        if keys - {"name", "value", "valueFrom"}:
            problems.append(f"env[{index}] has unknown keys {sorted(keys - {'name', 'value', 'valueFrom'})}")
        if len(keys & {"value", "valueFrom"}) != 1:
            problems.append(f"env[{index}] needs exactly one of value and valueFrom")
        problems += [
            f"env[{index}].{key} must be a string, not {type(entry[key]).__name__} (quote it)"
            for key in ("name", "value", "valueFrom")
            if key in entry and not isinstance(entry[key], str)
        ]
    if not problems:  # the same shape as a bundle's inline app config, in its typed model
        AppConfig.from_dict(
            {
                "command": config["command"],
                "env": [
                    {"value_from" if key == "valueFrom" else key: value for key, value in entry.items()}
                    for entry in config.get("env") or []
                ],
            }
        )
    return problems


def test_app_yaml_uses_only_its_documented_keys() -> None:
    assert app_yaml_problems(app_yaml()) == []


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ({"command": "python -m app"}, "command must be a non-empty list"),
        ({"command": ["x"], "env": [{"name": "A", "value": True}]}, "env[0].value must be a string"),
        ({"command": ["x"], "env": [{"name": "A", "value": "1", "valueFrom": "r"}]}, "exactly one of"),
        ({"command": ["x"], "env": [{"name": "A", "value_from": "r"}]}, "unknown keys"),
        ({"command": ["x"], "entrypoint": "y"}, "unknown key 'entrypoint'"),
    ],
)
def test_the_app_yaml_check_catches_what_the_runtime_would_not_read(broken: dict[str, Any], problem: str) -> None:
    assert any(problem in found for found in app_yaml_problems(broken)), app_yaml_problems(broken)


def test_every_value_from_names_a_resource_of_the_app_and_every_resource_is_used() -> None:
    wanted = {entry["valueFrom"] for entry in app_yaml()["env"] if "valueFrom" in entry}
    declared = {resource["name"] for resource in the_app(bundle())["resources"]}
    assert wanted == declared


def test_the_app_runs_dara_with_a_uv_managed_python() -> None:
    """No requirements.txt (it would make the runtime install with pip on its Python 3.11),
    a lock for uv, and a command that runs DARA in uv's environment on Python 3.12."""
    command = app_yaml()["command"]

    assert not (PROJECT_ROOT / "requirements.txt").exists()
    assert (PROJECT_ROOT / "uv.lock").is_file()
    assert command[:3] == ["uv", "run", "--frozen"]
    assert command[command.index("--python") + 1] == "3.12"
    assert command[-3:] == ["python", "-m", "app"]


def test_app_yaml_names_the_lakebase_instance_the_bundle_creates() -> None:
    config = bundle()
    env = {entry["name"]: entry.get("value") for entry in app_yaml()["env"]}
    instance = config["resources"]["database_instances"]["dara"]["name"]

    assert instance == "${var.lakebase_instance}"
    assert env["DARA_LAKEBASE_INSTANCE"] == config["variables"]["lakebase_instance"]["default"]
    for name, target in config["targets"].items():
        assert "lakebase_instance" not in (target.get("variables") or {}), f"target {name} renames it"


# -- databricks.yml ---------------------------------------------------------------------


def bundle_problems(config: Any) -> list[str]:
    """What in a bundle its schema or its models refuse, or what points nowhere."""
    problems = [f"unknown top-level key {key!r}" for key in config if key not in ROOT_KEYS]
    declared = config.get("variables") or {}
    for name, variable in declared.items():
        problems += [f"variable {name}: unknown key {key!r}" for key in variable if key not in VARIABLE_KEYS]
    resources = config.get("resources") or {}
    for kind, items in resources.items():
        model = MODELS.get(kind)
        if model is None:
            problems.append(f"resources.{kind}: not a resource type this bundle may use ({', '.join(MODELS)})")
            continue
        for key, item in items.items():
            try:
                model.from_dict(item)
            except (ValueError, TypeError) as exc:
                problems.append(f"resources.{kind}.{key}: {exc}")
    for name, target in (config.get("targets") or {}).items():
        problems += [f"targets.{name}: unknown key {key!r}" for key in target if key not in TARGET_KEYS]
        if target.get("mode") not in (None, "development", "production"):
            problems.append(f"targets.{name}.mode must be development or production")
        problems += [
            f"targets.{name}.variables.{v}: not declared" for v in target.get("variables") or {} if v not in declared
        ]
    for kind, path in references(config):
        if kind == "var" and path.split(".")[0] not in declared:
            problems.append(f"${{var.{path}}} is not a declared variable")
        if kind == "resources":
            type_, key = path.split(".")[:2]
            if key not in resources.get(type_, {}):
                problems.append(f"${{resources.{path}}} names no resource")
    return problems


def test_the_bundle_loads_into_the_bundle_models_and_every_reference_resolves() -> None:
    assert bundle_problems(bundle()) == []


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("resources", "jobs", "dara_demo", "max_concurent_runs"), 3, "Unexpected field 'max_concurent_runs'"),
        (("resources", "apps", "dara", "resources", 1, "job", "permission"), "CAN_RUN_FAST", "CAN_RUN_FAST"),
        (("resources", "pipelines"), {"p": {"name": "x"}}, "not a resource type"),
        (
            ("resources", "jobs", "dara_demo", "tasks", 0, "notebook_task", "base_parameters", "x"),
            "${var.nope}",
            "var.nope",
        ),
        (("targets", "prod", "mode"), "staging", "development or production"),
        (("bundle_name",), "x", "unknown top-level key"),
    ],
)
def test_the_bundle_check_catches_what_deploy_would_refuse(path: tuple[Any, ...], value: Any, problem: str) -> None:
    config = bundle()
    node = config
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    assert any(problem in found for found in bundle_problems(config)), bundle_problems(config)


def test_dev_and_prod_targets_and_the_app_starts_after_deploy() -> None:
    config = bundle()
    targets = config["targets"]

    assert targets["dev"] == {"mode": "development", "default": True}
    assert targets["prod"]["mode"] == "production"
    assert "${workspace.current_user.userName}" in targets["prod"]["workspace"]["root_path"]  # one copy per deployer
    app = the_app(config)
    assert app["source_code_path"] == "."
    assert app["lifecycle"]["started"] == "${var.start_app}"
    assert config["variables"]["start_app"]["default"] is True


def test_the_app_may_run_the_demo_job_read_its_secret_and_use_its_database() -> None:
    config = bundle()
    resources = {resource["name"]: resource for resource in the_app(config)["resources"]}

    assert resources["demo-job"]["job"] == {"id": "${resources.jobs.dara_demo.id}", "permission": "CAN_MANAGE_RUN"}
    assert resources["callback-secret"]["secret"]["permission"] == "READ"
    assert resources["database"]["database"]["instance_name"] == "${resources.database_instances.dara.name}"
    app_principal = "${resources.apps.dara.service_principal_client_id}"
    for key, job in config["resources"]["jobs"].items():
        if "dara_secret_scope" in str(job):  # jobs whose notebooks call the App back
            assert {"level": "CAN_MANAGE_RUN", "service_principal_name": app_principal} in job["permissions"], key


def job_tasks(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {task["task_key"]: task for task in job["tasks"]}


@pytest.mark.parametrize(("folder", "key"), [("task_graph", "task_graph"), ("callback_job", "callback_job")])
def test_the_example_jobs_are_the_jobs_dara_builds_from_their_folders(folder: str, key: str) -> None:
    """What ``POST /jobs/deploy`` would create, task by task, with the bundle's relative paths."""
    graph = validate(TaskGraph.from_folder(PROJECT_ROOT / "examples" / folder))
    paths = {file: f"./examples/{folder}/{file}" for file in workspace_paths(graph, "/x")}
    built = job_settings(graph, folder, paths).as_dict()
    job = bundle()["resources"]["jobs"][key]

    assert [env["environment_key"] for env in job["environments"]] == [
        env["environment_key"] for env in built["environments"]
    ]
    ours, theirs = job_tasks(job), job_tasks(built)
    assert set(ours) == set(theirs)
    for name, task in theirs.items():
        mine = dict(ours[name])
        params = mine["notebook_task"].get("base_parameters", {})
        extra = {k: v for k, v in params.items() if k.startswith("dara_")}  # how it calls the App back
        mine["notebook_task"] = {
            **mine["notebook_task"],
            "base_parameters": {k: v for k, v in params.items() if k not in extra},
        }
        if not mine["notebook_task"]["base_parameters"]:
            del mine["notebook_task"]["base_parameters"]
        if "depends_on" in mine:
            mine["depends_on"] = sorted(mine["depends_on"], key=lambda d: d["task_key"])
        assert mine == task, name


def test_the_demo_job_is_the_one_dara_deploys_itself_plus_how_to_call_back() -> None:
    job = bundle()["resources"]["jobs"]["dara_demo"]
    built = demo_job_settings("dara-demo", "./notebooks/dara_demo.py", cluster=None).as_dict()
    (task,) = job["tasks"]
    (theirs,) = built["tasks"]
    params = task["notebook_task"]["base_parameters"]

    assert {k: v for k, v in params.items() if not k.startswith("dara_")} == DEMO_PARAMETERS
    assert params["dara_secret_scope"] == "${var.callback_scope}"
    assert params["dara_workspace_url"] == "${workspace.host}"
    assert task["notebook_task"]["notebook_path"] == theirs["notebook_task"]["notebook_path"]
    for field in ("environment_key", "disable_auto_optimization", "timeout_seconds"):
        assert task[field] == theirs[field], field
    assert job["max_concurrent_runs"] == built["max_concurrent_runs"]


# -- uv.lock ---------------------------------------------------------------------------


def uv() -> str:
    return str(Path(sys.executable).with_name("uv"))


def test_the_lock_is_up_to_date_with_pyproject() -> None:
    """The App installs exactly uv.lock; a dependency added to pyproject.toml and not locked
    would be missing there. Re-lock with the runtime's uv: `.venv/bin/uv lock`."""
    checked = subprocess.run(
        [uv(), "lock", "--check", "--offline"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'registry = "https://pypi.org/simple"' in (PROJECT_ROOT / "uv.lock").read_text()
