"""The two inputs of a task graph -- compute config and task list -- and their loaders.

Both come as JSON or YAML: from files, from a folder laid out by convention, or as
already-parsed data from the HTTP API. Whatever the source, parsing problems come
back as one :class:`~app.taskgraph.validate.TaskGraphError` listing all of them,
each prefixed with where it is (``compute.yaml: etl-small.num_workers: ...``), so a
broken file is fixed in one pass. The formats are documented with examples in
``examples/task_graph/README.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, Literal

import yaml
from databricks.sdk.service import compute as dbx_compute
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from app.taskgraph.validate import TaskGraphError

#: Names become Databricks task keys, job cluster keys and environment keys.
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,99}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]

TaskFormat = Literal["notebook", "python", "sql"]
DocumentFormat = Literal["json", "yaml"]

#: Files looked for in a task-graph folder, in this order.
COMPUTE_FILES = ("compute.yaml", "compute.yml", "compute.json")
TASKS_FILES = ("tasks.yaml", "tasks.yml", "tasks.json")

_CLUSTER_FIELDS = frozenset(f.name for f in fields(dbx_compute.ClusterSpec))
_DURATION = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s?)?\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- compute ----------------------------------------------------------------------------


class NewCluster(BaseModel):
    """A job cluster created for each run: any field of the Clusters API ``ClusterSpec``.

    Extra keys are the cluster spec itself, passed through unchanged -- but checked
    against the SDK's field list, because the SDK silently drops unknown keys and a
    typo like ``num_worker`` would otherwise deploy a different cluster.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: ClassVar[str] = "cluster"

    spark_version: str
    node_type_id: str | None = None
    num_workers: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _known_fields(self) -> NewCluster:
        unknown = sorted(set(self.model_extra or {}) - _CLUSTER_FIELDS)
        if unknown:
            msg = (
                f"unknown cluster setting(s) {', '.join(unknown)}; a new cluster takes the "
                "fields of the Clusters API (spark_version, node_type_id, num_workers, "
                "autoscale, spark_conf, ...)"
            )
            raise ValueError(msg)
        return self

    def cluster_spec(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class ExistingCluster(_Strict):
    """An all-purpose cluster that already exists, by id."""

    kind: ClassVar[str] = "existing_cluster"
    existing_cluster_id: str = Field(min_length=1)


class Warehouse(_Strict):
    """A SQL warehouse, by id: where ``sql`` tasks run."""

    kind: ClassVar[str] = "warehouse"
    warehouse_id: str = Field(min_length=1)


class ServerlessEnvironment(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    environment_version: str = Field(min_length=1)
    dependencies: tuple[str, ...] = ()


class Serverless(_Strict):
    """Serverless jobs compute: an environment spec instead of a cluster.

    ``disable_auto_optimization`` defaults to true because the local emulator runs only
    such tasks, and because DARA retries durably itself rather than relying on
    serverless' own automatic retries.
    """

    kind: ClassVar[str] = "serverless"
    serverless: ServerlessEnvironment
    disable_auto_optimization: bool = True


def _compute_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return getattr(value, "kind", None)
    if not isinstance(value, Mapping):
        return None
    markers = [
        kind
        for kind, key in (
            ("serverless", "serverless"),
            ("warehouse", "warehouse_id"),
            ("existing_cluster", "existing_cluster_id"),
            ("cluster", "spark_version"),
        )
        if key in value
    ]
    return markers[0] if len(markers) == 1 else None


ComputeEntry = Annotated[
    Annotated[NewCluster, Tag("cluster")]
    | Annotated[ExistingCluster, Tag("existing_cluster")]
    | Annotated[Warehouse, Tag("warehouse")]
    | Annotated[Serverless, Tag("serverless")],
    Discriminator(
        _compute_kind,
        custom_error_type="compute_kind",
        custom_error_message=(
            "a compute entry must be exactly one of: a new cluster spec (with spark_version), "
            "{existing_cluster_id: ...}, {warehouse_id: ...} or "
            "{serverless: {environment_version: ...}}"
        ),
    ),
]
_COMPUTE = TypeAdapter(dict[Name, ComputeEntry])


# -- tasks ------------------------------------------------------------------------------


def _as_text(value: Any) -> Any:
    """Databricks parameters are strings; YAML's ``count: 10`` should not be an error."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _parameters(value: Any) -> Any:
    """Check parameters here, so a mistake reads as one sentence, not a union's two errors."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                msg = (
                    f"parameter name {key!r} is not text; quote it (YAML reads unquoted "
                    "yes/no/on/off/true/false as booleans and digits as numbers)"
                )
                raise ValueError(msg)  # noqa: TRY004 -- pydantic reports only a ValueError as a validation error
            if _as_text(item) is item and not isinstance(item, str):
                msg = f"parameter {key!r} must be text, a number or a boolean, not {_kind(item)}"
                raise ValueError(msg)
        return {key: _as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        for item in value:
            if _as_text(item) is item and not isinstance(item, str):
                msg = f"parameters must be text, numbers or booleans, not {_kind(item)}"
                raise ValueError(msg)
        return [_as_text(item) for item in value]
    msg = f"parameters must be a mapping (name: value) or, for a python task, a list; got {_kind(value)}"
    raise ValueError(msg)


def _seconds(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match = _DURATION.fullmatch(value)
    if match is None or not any(match.groups()):
        msg = f"timeout {value!r} is not a duration; use seconds (600) or e.g. '10m', '1h30m'"
        raise ValueError(msg)
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class TaskSpec(_Strict):
    """One task: a file in the folder, how to run it, on what, and after which tasks."""

    name: Name
    #: Relative to the task-graph folder, POSIX style.
    file: str
    #: Inferred from the file when omitted: .sql -> sql; .py and .ipynb -> notebook.
    format: TaskFormat
    compute: str
    depends_on: tuple[str, ...] = ()
    #: Notebook widgets / SQL parameters (a mapping), or a Python file's argv (a list,
    #: or a mapping turned into ``--key value`` pairs).
    parameters: Annotated[dict[str, str] | list[str], BeforeValidator(_parameters)] = Field(default_factory=dict)
    retries: int = Field(default=0, ge=0, le=100)
    #: Seconds, or a duration such as "10m"; 0 means none.
    timeout: Annotated[int, BeforeValidator(_seconds), Field(ge=0)] = 0
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _infer_format(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("format") is None and "file" in data:
            suffix = PurePosixPath(str(data["file"])).suffix.casefold()
            inferred = {".sql": "sql", ".py": "notebook", ".ipynb": "notebook"}.get(suffix)
            if inferred is None:
                msg = f"cannot tell the format of {data['file']!r}; set format: notebook, python or sql"
                raise ValueError(msg)
            data = {**data, "format": inferred}
        return data

    @field_validator("depends_on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("file")
    @classmethod
    def _relative_file(cls, value: str) -> str:
        path = PurePosixPath(value.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or not path.parts or path.name in ("", "."):
            msg = f"file {value!r} must be a path inside the task-graph folder (relative, no '..')"
            raise ValueError(msg)
        return path.as_posix()

    @model_validator(mode="after")
    def _parameters_fit_format(self) -> TaskSpec:
        if isinstance(self.parameters, list) and self.format != "python":
            msg = f"parameters of a {self.format} task are named: give a mapping (name: value), not a list"
            raise ValueError(msg)
        return self

    def argv(self) -> list[str]:
        """A Python file's parameters as command-line arguments."""
        if isinstance(self.parameters, list):
            return list(self.parameters)
        return [part for key, value in self.parameters.items() for part in (f"--{key}", value)]


_TASKS = TypeAdapter(list[TaskSpec])


# -- the graph ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskGraph:
    """Named compute and the tasks that use it; ``folder`` is where task files live.

    Parsed, not yet validated: pass it to :func:`app.taskgraph.validate.validate`.
    """

    compute: Mapping[str, NewCluster | ExistingCluster | Warehouse | Serverless]
    tasks: tuple[TaskSpec, ...]
    folder: Path | None = None
    sources: tuple[str, str] = field(default=("compute", "tasks"), compare=False)

    def task(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        msg = f"no task is named {name!r}"
        raise KeyError(msg)

    @classmethod
    def from_data(
        cls,
        compute: Any,
        tasks: Any,
        folder: str | Path | None = None,
        *,
        sources: tuple[str, str] = ("compute", "tasks"),
    ) -> TaskGraph:
        """From parsed JSON/YAML (e.g. an HTTP request body); problems of both at once."""
        problems: list[str] = []
        parsed_compute = _collect(problems, lambda: parse_compute(compute, source=sources[0]))
        parsed_tasks = _collect(problems, lambda: parse_tasks(tasks, source=sources[1]))
        if problems:
            raise TaskGraphError(problems)
        assert parsed_compute is not None and parsed_tasks is not None
        return cls(
            compute=parsed_compute,
            tasks=parsed_tasks,
            folder=Path(folder).resolve() if folder is not None else None,
            sources=sources,
        )

    @classmethod
    def from_text(
        cls,
        compute: str,
        tasks: str,
        folder: str | Path | None = None,
        *,
        fmt: DocumentFormat | None = None,
    ) -> TaskGraph:
        """From JSON or YAML text (``fmt=None`` tells them apart by their first character)."""
        problems: list[str] = []
        compute_data = _collect(problems, lambda: read_document(compute, fmt=fmt, source="compute"))
        tasks_data = _collect(problems, lambda: read_document(tasks, fmt=fmt, source="tasks"))
        if problems:
            raise TaskGraphError(problems)
        return cls.from_data(compute_data, tasks_data, folder)

    @classmethod
    def from_files(cls, compute: str | Path, tasks: str | Path, folder: str | Path | None = None) -> TaskGraph:
        """From a compute file and a task file; task files are relative to ``folder``
        (default: the task list's directory)."""
        compute, tasks = Path(compute), Path(tasks)
        problems: list[str] = []
        compute_data = _collect(problems, lambda: load_document(compute))
        tasks_data = _collect(problems, lambda: load_document(tasks))
        if problems:
            raise TaskGraphError(problems)
        return cls.from_data(
            compute_data,
            tasks_data,
            folder if folder is not None else tasks.parent,
            sources=(compute.name, tasks.name),
        )

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        *,
        compute: str | Path | None = None,
        tasks: str | Path | None = None,
    ) -> TaskGraph:
        """From a folder: ``compute.yaml|yml|json`` and ``tasks.yaml|yml|json`` in it,
        unless given explicitly; task files are relative to the folder."""
        folder = Path(folder)
        problems: list[str] = []
        if not folder.is_dir():
            raise TaskGraphError([f"task-graph folder {str(folder)!r} does not exist"])
        compute_file = Path(compute) if compute else _conventional(folder, COMPUTE_FILES, problems)
        tasks_file = Path(tasks) if tasks else _conventional(folder, TASKS_FILES, problems)
        if problems:
            raise TaskGraphError(problems)
        assert compute_file is not None and tasks_file is not None
        return cls.from_files(compute_file, tasks_file, folder)


def parse_compute(data: Any, *, source: str = "compute") -> dict[str, Any]:
    """The compute mapping (name -> entry) from parsed JSON/YAML."""
    if not isinstance(data, Mapping):
        raise TaskGraphError([f"{source}: expected a mapping of compute names to entries, got {_kind(data)}"])
    try:
        return _COMPUTE.validate_python(data)
    except ValidationError as error:
        raise TaskGraphError(_problems(error, source)) from None


def parse_tasks(data: Any, *, source: str = "tasks") -> tuple[TaskSpec, ...]:
    """The task list from parsed JSON/YAML: a list of tasks, or ``{tasks: [...]}``."""
    if isinstance(data, Mapping) and set(data) == {"tasks"}:
        data = data["tasks"]
    if not isinstance(data, Sequence) or isinstance(data, str):
        raise TaskGraphError([f"{source}: expected a list of tasks, got {_kind(data)}"])
    try:
        return tuple(_TASKS.validate_python(data))
    except ValidationError as error:
        raise TaskGraphError(_problems(error, source, data)) from None


def read_document(text: str, *, fmt: DocumentFormat | None = None, source: str) -> Any:
    """JSON or YAML text, refusing duplicate keys (which both would silently collapse)."""
    if fmt is None:
        fmt = "json" if text.lstrip()[:1] in ("{", "[") else "yaml"
    if fmt == "json":
        try:
            return json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as error:
            problem = f"{source}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
            raise TaskGraphError([problem]) from None
        except _DuplicateKeyError as error:
            raise TaskGraphError([f"{source}: {error}"]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no object tags
    except yaml.YAMLError as error:
        raise TaskGraphError([f"{source}: invalid YAML: {_one_line(str(error))}"]) from None


def load_document(path: str | Path) -> Any:
    """A JSON (``.json``) or YAML (anything else) file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskGraphError([f"{path}: file not found"]) from None
    except OSError as error:
        raise TaskGraphError([f"{path}: cannot read it ({error.strerror})"]) from None
    fmt: DocumentFormat = "json" if path.suffix.casefold() == ".json" else "yaml"
    return read_document(text, fmt=fmt, source=path.name)


# -- helpers ------------------------------------------------------------------------------


class _DuplicateKeyError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            msg = f"key {key!r} appears twice in the same object; names must be unique"
            raise _DuplicateKeyError(msg)
        result[key] = value
    return result


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice; names must be unique",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _conventional(folder: Path, names: tuple[str, ...], problems: list[str]) -> Path | None:
    found = [folder / name for name in names if (folder / name).is_file()]
    if len(found) == 1:
        return found[0]
    if not found:
        problems.append(f"{folder}: no {' / '.join(names)} found; add one or pass its path")
    else:
        problems.append(f"{folder}: both {' and '.join(p.name for p in found)} exist; keep one of them")
    return None


def _collect[T](problems: list[str], load: Callable[[], T]) -> T | None:
    try:
        return load()
    except TaskGraphError as error:
        problems += error.problems
        return None


def _problems(error: ValidationError, source: str, tasks: Any = None) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        loc = list(item["loc"])
        where = _where(loc, tasks)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "string_pattern_mismatch":
            message = (
                f"{item['input']!r} is not a valid name: start with a letter, then letters, "
                "digits, '_' or '-' (at most 100 characters)"
            )
        problems.append(f"{source}: {where}: {message}" if where else f"{source}: {message}")
    return problems


def _where(loc: list[Any], tasks: Any) -> str:
    # Pydantic locates errors inside unions and keyed dicts with tags ('cluster',
    # '[key]'); a reader wants the entry and field as written in the file.
    parts: list[str] = []
    for index, part in enumerate(loc):
        if part in ("cluster", "existing_cluster", "warehouse", "serverless") and index == 1:
            continue
        if part == "[key]":
            parts.append("(name)")
            continue
        if isinstance(part, int) and tasks is not None and index == 0:
            name = _task_name(tasks, part)
            parts.append(f"task #{part + 1}" + (f" ({name!r})" if name else ""))
            continue
        parts.append(str(part))
    return ".".join(parts)


def _task_name(tasks: Any, index: int) -> str | None:
    try:
        name = tasks[index].get("name")
    except (AttributeError, IndexError, TypeError):
        return None
    return name if isinstance(name, str) else None


def _kind(data: Any) -> str:
    if data is None:
        return "nothing (empty document)"
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(data), type(data).__name__)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
