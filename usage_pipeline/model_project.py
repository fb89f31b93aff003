"""Load a dbt-like model tree: SQL files and YAML in, a validated `Project` out.

The one rule: everything that can be wrong in a model tree (a `ref()` to nothing, a cycle, YAML
that does not parse, a test on a missing column, SQL that sqlglot cannot write for PostgreSQL)
fails here, at definition load, with a `ModelError` naming the file. Nothing in this module
touches a warehouse: `models.py` runs what this module has proven well-formed.

Layout it reads (dbt's conventions, without dbt):

    <models_dir>/_sources.yml, **/_sources.yml      dbt `sources:` (merged by source name)
    <models_dir>/{staging,intermediate,marts}/**/*.sql   one SELECT per file; file stem = model name
    <models_dir>/**/_models.yml                     dbt `models:` (descriptions, columns, tests)
    <models_dir>/macros/*.sql                       Jinja macros, global in every model
"""

from __future__ import annotations

import difflib
import re
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2
import jinja2.bccache
import jinja2.nodes
import sqlglot
import yaml
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError, UnsupportedError
from sqlglot.optimizer.qualify import qualify

from usage_pipeline.errors import ModelError
from usage_pipeline.model_tests import TestSpec, parse_tests

LAYERS = ("staging", "intermediate", "marts")
MATERIALIZATIONS = ("view", "table", "incremental")
DIALECTS = ("duckdb", "postgres")
# PostgreSQL truncates identifiers at 63 bytes; `<name>__tmp_<8 hex>` must still fit.
MAX_NAME_LENGTH = 48
NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_CONFIG_KEYS = frozenset({"materialized", "unique_key", "partition_by", "tags", "meta"})
_BUILTINS = frozenset({"ref", "source", "config", "is_incremental", "this", "var", "target"})
_MISSING = object()
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster loads


# ---------- the objects a project is made of


@dataclass(frozen=True)
class Relation:
    """A warehouse table or view; renders as its quoted name (what `{{ ref() }}` inserts)."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f'"{self.schema}"."{self.name}"'

    @property
    def identifier(self) -> str:  # dbt's spelling, for macros written against dbt
        return self.name

    @property
    def dotted(self) -> str:
        """`schema.name`, for messages, metadata and `Warehouse` helpers."""
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Column:
    name: str
    description: str = ""
    data_type: str | None = None


@dataclass(frozen=True)
class SourceTable:
    """A table written outside the models (by the source assets), declared in `_sources.yml`."""

    source: str
    name: str
    relation: Relation
    asset_key: tuple[str, ...]
    description: str
    file: str


@dataclass(frozen=True)
class ModelConfig:
    materialized: str = "view"
    unique_key: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Model:
    """One `.sql` file with its YAML: what it builds, from what, and how it is tested."""

    name: str
    layer: str
    group: str
    file: str  # path relative to the models dir, for messages
    path: Path
    template: str
    config: ModelConfig
    refs: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]
    description: str = ""
    columns: tuple[Column, ...] = ()
    tests: tuple[TestSpec, ...] = ()
    output_columns: tuple[str, ...] | None = None  # None: sqlglot could not tell (a `*` upstream)
    yaml_file: str | None = None

    @property
    def relation(self) -> Relation:
        return Relation(self.layer, self.name)

    @property
    def asset_key(self) -> tuple[str, str]:
        return (self.layer, self.name)


@dataclass(frozen=True)
class MacroFile:
    file: str
    text: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Project:
    """A parsed, validated model tree: models in dependency order, sources, macros, vars."""

    root: Path
    models: Mapping[str, Model]
    sources: Mapping[tuple[str, str], SourceTable]
    macros: tuple[MacroFile, ...]
    vars: Mapping[str, Any]
    order: tuple[str, ...]  # topological: every model after the models it refs

    def model(self, name: str) -> Model:
        if name not in self.models:
            raise ModelError(f"{self.root}: no model named {name!r}{_did_you_mean(name, self.models)}")
        return self.models[name]

    def upstream_keys(self, model: Model) -> list[tuple[str, ...]]:
        """Asset keys of what `model` reads: refs first, then sources."""
        keys = [self.models[name].asset_key for name in model.refs]
        return keys + [self.sources[source].asset_key for source in model.sources]

    def children(self, name: str) -> list[str]:
        return [other for other in self.order if name in self.models[other].refs]

    def select(self, selectors: Sequence[str] | None) -> list[str]:
        """Model names matching dbt-style selectors, in dependency order.

        `name`, `group:<group>`, `layer:<layer>`; a leading `+` adds ancestors, a trailing `+`
        adds descendants (`group:workato+` = the Workato models and everything built from them).
        """
        if not selectors:
            return list(self.order)
        chosen: set[str] = set()
        for selector in selectors:
            ancestors, descendants = selector.startswith("+"), selector.endswith("+")
            core = selector.strip("+")
            kind, _, value = core.rpartition(":")
            if kind == "group":
                base = {m.name for m in self.models.values() if m.group == value}
            elif kind == "layer":
                base = {m.name for m in self.models.values() if m.layer == value}
            elif kind == "":
                base = {self.model(core).name}
            else:
                raise ModelError(
                    f"unknown selector {selector!r}: use name, group:<group> or layer:<layer>, with + for the graph"
                )
            if not base:
                raise ModelError(f"selector {selector!r} matches no model")
            chosen |= base
            if ancestors:
                chosen |= self._closure(base, lambda n: self.models[n].refs)
            if descendants:
                chosen |= self._closure(base, self.children)
        return [name for name in self.order if name in chosen]

    @staticmethod
    def _closure(start: Iterable[str], step: Callable[[str], Iterable[str]]) -> set[str]:
        seen: set[str] = set()
        stack = list(start)
        while stack:
            for nxt in step(stack.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def render(
        self,
        model: Model,
        *,
        is_incremental: bool = False,
        target: str = "duckdb",
        relations: Mapping[str, Relation] | None = None,
    ) -> str:
        """Render `model` to DuckDB SQL (transpile with `to_dialect` for PostgreSQL).

        `relations` overrides where refs (`model name`), sources (`source.table`) and `this`
        point: the unit-test helper uses it to aim a model at scratch tables.
        """
        overrides = dict(relations or {})

        def ref(name: str) -> Relation:
            if relations is not None:
                if name not in overrides:
                    raise ModelError(f"ref({name!r}) was not given to the unit test")
                return overrides[name]
            return self.model(name).relation

        def source(source_name: str, table: str) -> Relation:
            if relations is not None:
                key = f"{source_name}.{table}"
                if key not in overrides:
                    raise ModelError(f"source({source_name!r}, {table!r}) was not given to the unit test")
                return overrides[key]
            return self.sources[(source_name, table)].relation

        this = overrides.get("this", model.relation)
        context = _context(ref, source, this, is_incremental, target, self.vars)
        return _render(model.file, model.template, self.macros, context)


# ---------- loading


def load_project(models_dir: Path, *, vars: Mapping[str, Any] | None = None) -> Project:
    """Discover, parse and validate every model, source, macro and test under `models_dir`."""
    root = Path(models_dir).resolve()
    if not root.is_dir():
        raise ModelError(f"{root}: models directory does not exist")
    project_vars = dict(vars or {})
    macros = _load_macros(root)
    sources: dict[tuple[str, str], SourceTable] = {}
    docs: dict[str, tuple[dict, str]] = {}
    for path in sorted([*root.rglob("*.yml"), *root.rglob("*.yaml")]):
        _read_yaml_file(path, root, sources, docs)
    files = _discover_sql(root)
    for name in docs:
        if name not in files:
            hint = _did_you_mean(name, files)
            raise ModelError(f"{docs[name][1]}: describes model {name!r}, which has no .sql file{hint}")
    project = Project(root, {}, sources, macros, project_vars, ())
    models: dict[str, Model] = {}
    for name, path in files.items():
        models[name] = _load_model(project, name, path, docs.get(name), files)
    project = replace(project, models=models)
    _check_relation_clashes(project)
    models = {name: _attach_tests(project, model, docs.get(name)) for name, model in models.items()}
    return replace(project, models=models, order=_topological_order(models))


def _load_macros(root: Path) -> tuple[MacroFile, ...]:
    macros: list[MacroFile] = []
    seen: dict[str, str] = {}
    env = jinja2.Environment()
    for path in sorted((root / "macros").glob("*.sql")):
        file = str(path.relative_to(root))
        text = path.read_text()
        try:
            tree = env.parse(text, name=file)
        except jinja2.TemplateSyntaxError as error:
            raise ModelError(f"{file}:{error.lineno}: Jinja syntax error: {error.message}") from None
        names = tuple(node.name for node in tree.body if isinstance(node, jinja2.nodes.Macro))
        for name in names:
            if name in _BUILTINS:
                raise ModelError(f"{file}: macro {name!r} would hide the built-in {name}()")
            if name in seen:
                raise ModelError(f"{file}: macro {name!r} is also defined in {seen[name]}")
            seen[name] = file
        macros.append(MacroFile(file, text, names))
    return tuple(macros)


def _discover_sql(root: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*.sql")):
        relative = path.relative_to(root)
        if relative.parts[0] == "macros":
            continue
        if relative.parts[0] not in LAYERS or len(relative.parts) < 2:
            raise ModelError(f"{relative}: models live under {', '.join(p + '/' for p in LAYERS)} (found outside them)")
        name = path.stem
        if not NAME.match(name) or len(name) > MAX_NAME_LENGTH:
            raise ModelError(
                f"{relative}: model name {name!r} must be lower-case snake_case, at most {MAX_NAME_LENGTH} characters"
            )
        if name in files:
            raise ModelError(f"{relative}: model name {name!r} is also used by {files[name].relative_to(root)}")
        files[name] = path
    return files


def _read_yaml_file(
    path: Path, root: Path, sources: dict[tuple[str, str], SourceTable], docs: dict[str, tuple[dict, str]]
) -> None:
    file = str(path.relative_to(root))
    try:
        content = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ModelError(f"{file}{where}: YAML does not parse: {problem}") from None
    if content is None:
        return
    if not isinstance(content, dict):
        raise ModelError(f"{file}: expected a mapping with `models:` and/or `sources:`")
    unknown = set(content) - {"version", "models", "sources", "macros"}
    if unknown:
        raise ModelError(f"{file}: unknown top-level key(s) {sorted(unknown)}: expected version, models, sources")
    for entry in _list_of_dicts(content.get("sources"), file, "sources"):
        _read_source(entry, file, sources)
    for entry in _list_of_dicts(content.get("models"), file, "models"):
        name = entry.get("name")
        if not isinstance(name, str):
            raise ModelError(f"{file}: every model entry needs a `name`")
        if name in docs:
            raise ModelError(f"{file}: model {name!r} is already described in {docs[name][1]}")
        docs[name] = (entry, file)


def _read_source(entry: dict, file: str, sources: dict[tuple[str, str], SourceTable]) -> None:
    """Merge one dbt `sources:` entry; vendors declare their own tables in their own file."""
    source_name = entry.get("name")
    if not isinstance(source_name, str) or not NAME.match(source_name):
        raise ModelError(f"{file}: a source needs a snake_case `name`")
    schema = entry.get("schema", source_name)
    for table in _list_of_dicts(entry.get("tables") or [], file, f"sources[{source_name}].tables"):
        table_name = table.get("name")
        identifier = table.get("identifier", table_name)
        if not isinstance(table_name, str) or not NAME.match(str(identifier)) or not NAME.match(str(schema)):
            raise ModelError(f"{file}: source {source_name!r} has a table with a missing or unsafe name: {table_name!r}")
        key = (source_name, table_name)
        if key in sources:
            raise ModelError(f"{file}: source table {source_name}.{table_name} is also declared in {sources[key].file}")
        meta_key = ((table.get("meta") or {}).get("dagster") or {}).get("asset_key")
        sources[key] = SourceTable(
            source=source_name,
            name=table_name,
            relation=Relation(schema, identifier),
            asset_key=tuple(meta_key) if meta_key else (schema, identifier),
            description=str(table.get("description") or ""),
            file=file,
        )


def _list_of_dicts(value: Any, file: str, what: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ModelError(f"{file}: `{what}` must be a list of mappings")
    return value


@dataclass
class _Capture:
    """What the first render pass learns: dbt extracts refs, sources and config the same way."""

    refs: set[str] = field(default_factory=set)
    sources: set[tuple[str, str]] = field(default_factory=set)
    config: dict[str, Any] = field(default_factory=dict)


def _load_model(
    project: Project, name: str, path: Path, doc: tuple[dict, str] | None, files: Mapping[str, Path]
) -> Model:
    file = str(path.relative_to(project.root))
    relative = path.relative_to(project.root).parts
    layer = relative[0]
    # staging/intermediate group by vendor subfolder (the vendor's assets share the group);
    # marts are cross-vendor and form one group.
    group = relative[1] if layer != "marts" and len(relative) > 2 else layer
    if not NAME.match(group):
        raise ModelError(f"{file}: folder {group!r} is not a valid group name (snake_case)")
    template = path.read_text()
    capture = _Capture()

    def ref(ref_name: str) -> Relation:
        if ref_name not in files:
            raise ModelError(f"ref({ref_name!r}) names no model{_did_you_mean(ref_name, files)}")
        capture.refs.add(ref_name)
        return Relation(files[ref_name].relative_to(project.root).parts[0], ref_name)

    def source(source_name: str, table: str) -> Relation:
        if (source_name, table) not in project.sources:
            declared = [f"{s}.{t}" for s, t in project.sources]
            raise ModelError(
                f"source({source_name!r}, {table!r}) is not declared in any _sources.yml"
                f"{_did_you_mean(f'{source_name}.{table}', declared)}"
            )
        capture.sources.add((source_name, table))
        return project.sources[(source_name, table)].relation

    def config(**kwargs: Any) -> str:
        capture.config.update(kwargs)
        return ""

    rendered: dict[bool, str] = {}
    for incremental in (False, True):  # both branches, so refs inside is_incremental() count too
        context = _context(ref, source, Relation(layer, name), incremental, "duckdb", project.vars)
        rendered[incremental] = _render(file, template, project.macros, {**context, "config": config})
    entry, yaml_file = doc if doc else ({}, None)
    model_config = _model_config({**(entry.get("config") or {}), **capture.config}, file)
    output_columns = None
    for incremental, sql in rendered.items():
        if incremental and model_config.materialized != "incremental":
            continue
        tree = parse_select(sql, file=file)
        check_portable(tree, file=file)
        _write_postgres(tree.copy(), file=file, columns_of=None)
        if not incremental:
            output_columns = _output_columns(tree)
    return Model(
        name=name,
        layer=layer,
        group=group,
        file=file,
        path=path,
        template=template,
        config=model_config,
        refs=tuple(sorted(capture.refs)),
        sources=tuple(sorted(capture.sources)),
        description=str(entry.get("description") or "").strip(),
        columns=_columns(entry, yaml_file),
        output_columns=output_columns,
        yaml_file=yaml_file,
    )


def _model_config(raw: Mapping[str, Any], file: str) -> ModelConfig:
    unknown = set(raw) - _CONFIG_KEYS
    if unknown:
        raise ModelError(f"{file}: unknown config key(s) {sorted(unknown)}: expected one of {sorted(_CONFIG_KEYS)}")
    materialized = raw.get("materialized", "view")
    if materialized not in MATERIALIZATIONS:
        raise ModelError(f"{file}: unknown materialization {materialized!r}: use one of {', '.join(MATERIALIZATIONS)}")
    unique_key = _names(raw.get("unique_key"), file, "unique_key")
    if materialized == "incremental" and not unique_key:
        raise ModelError(f"{file}: an incremental model needs unique_key=[...] (the rows a run replaces)")
    return ModelConfig(
        materialized=materialized,
        unique_key=unique_key,
        partition_by=_names(raw.get("partition_by"), file, "partition_by"),
        tags=tuple(str(tag) for tag in _as_list(raw.get("tags"))),
    )


def _names(value: Any, file: str, what: str) -> tuple[str, ...]:
    if isinstance(value, dict):  # dbt-bigquery spells partition_by as {field: ..., data_type: ...}
        value = value.get("field")
    names = tuple(str(item) for item in _as_list(value))
    for name in names:
        if not NAME.match(name):
            raise ModelError(f"{file}: {what} column {name!r} is not a plain snake_case column name")
    return names


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _columns(entry: Mapping[str, Any], file: str | None) -> tuple[Column, ...]:
    columns = []
    for column in _list_of_dicts(entry.get("columns"), str(file), "columns"):
        name = column.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ModelError(f"{file}: model {entry.get('name')!r} has a column with a missing or unsafe name: {name!r}")
        columns.append(Column(name, str(column.get("description") or "").strip(), column.get("data_type")))
    return tuple(columns)


def _attach_tests(project: Project, model: Model, doc: tuple[dict, str] | None) -> Model:
    """Parse the model's YAML tests and prove every column they name exists."""
    if doc is None:
        return model
    entry, file = doc
    known = set(model.output_columns) if model.output_columns is not None else {c.name for c in model.columns}
    if model.output_columns is not None:
        for column in model.columns:
            if column.name not in known:
                raise ModelError(f"{file}: documents column {column.name!r}, which {model.file} does not select")
    tests = parse_tests(entry.get("data_tests", entry.get("tests")), column=None, file=file, model=model.name)
    for column in entry.get("columns") or []:
        entries = column.get("data_tests", column.get("tests"))
        tests += parse_tests(entries, column=column["name"], file=file, model=model.name)
    resolved = []
    for test in tests:
        if known:
            for column in test.columns:
                if column not in known:
                    raise ModelError(
                        f"{file}: test {test.name} on model {model.name!r} names column {column!r}, "
                        f"which the model does not have{_did_you_mean(column, known)}"
                    )
        resolved.append(_resolve_relationship(project, model, test, file) if test.kind == "relationships" else test)
    names = [test.name for test in resolved]
    for name in names:
        if names.count(name) > 1:
            raise ModelError(f"{file}: two tests on model {model.name!r} are named {name!r}: give one a `name:`")
    return replace(model, tests=tuple(resolved))


def _resolve_relationship(project: Project, model: Model, test: TestSpec, file: str) -> TestSpec:
    """Evaluate `to: ref('m')` / `to: source('s', 't')` as a Jinja expression, as dbt does."""
    found: list[tuple[tuple[str, ...], Relation, tuple[str, ...] | None]] = []

    def ref(name: str) -> Relation:
        parent = project.model(name)
        found.append((parent.asset_key, parent.relation, parent.output_columns))
        return parent.relation

    def source(source_name: str, table: str) -> Relation:
        if (source_name, table) not in project.sources:
            raise ModelError(f"{file}: test {test.name}: source({source_name!r}, {table!r}) is not declared")
        parent = project.sources[(source_name, table)]
        found.append((parent.asset_key, parent.relation, None))
        return parent.relation

    try:
        jinja2.Environment().compile_expression(str(test.to))(ref=ref, source=source)
    except (jinja2.TemplateError, TypeError) as error:
        raise ModelError(
            f"{file}: test {test.name}: `to: {test.to}` is not ref('model') or source('s', 't'): {error}"
        ) from None
    except ModelError as error:
        raise ModelError(f"{file}: test {test.name} on model {model.name!r}: {error}") from None
    if len(found) != 1:
        raise ModelError(f"{file}: test {test.name}: `to:` must name exactly one ref() or source()")
    key, relation, parent_columns = found[0]
    if parent_columns is not None and test.field not in parent_columns:
        raise ModelError(f"{file}: test {test.name}: field {test.field!r} is not a column of {relation.dotted}")
    return replace(test, parent=str(relation), parent_key=key)


def _check_relation_clashes(project: Project) -> None:
    for source in project.sources.values():
        for model in project.models.values():
            if source.relation == model.relation:
                raise ModelError(
                    f"{model.file}: builds {model.relation.dotted}, which {source.file} declares as a source table"
                )


def _topological_order(models: Mapping[str, Model]) -> tuple[str, ...]:
    """Depth-first order (layer, name tie-break); a cycle is reported as its path of files."""
    order: list[str] = []
    state: dict[str, str] = {}
    rank = {layer: i for i, layer in enumerate(LAYERS)}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise ModelError(
                f"{models[name].file}: ref() cycle: " + " -> ".join(cycle)
                + " (" + ", ".join(models[n].file for n in cycle[:-1]) + ")"
            )
        state[name] = "visiting"
        for parent in models[name].refs:
            visit(parent, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in sorted(models, key=lambda n: (rank[models[n].layer], n)):
        visit(name, [])
    return tuple(order)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------- rendering


def _context(
    ref: Callable[[str], Relation],
    source: Callable[[str, str], Relation],
    this: Relation,
    is_incremental: bool,
    target: str,
    project_vars: Mapping[str, Any],
) -> dict[str, Any]:
    def var(name: str, default: Any = _MISSING) -> Any:
        if name in project_vars:
            return project_vars[name]
        if default is _MISSING:
            raise ModelError(f"var({name!r}) is not set and has no default")
        return default

    return {
        "ref": ref,
        "source": source,
        "config": lambda **_: "",
        "is_incremental": lambda: is_incremental,
        "this": this,
        "var": var,
        # dbt's `target.type`: the engine the SQL is for (the SQL itself stays DuckDB SQL)
        "target": {"type": target, "name": target},
    }


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates kept in memory, keyed by name and source checksum.

    Every render gets a fresh Environment (its globals are that render's ref/this/...), so
    without this each render would recompile the model and every macro file.
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED = _CompiledTemplates()


def _render(file: str, template: str, macros: Sequence[MacroFile], context: Mapping[str, Any]) -> str:
    """Render a model with Jinja2; every macro file's macros are globals, as in dbt."""
    templates = {macro.file: macro.text for macro in macros} | {file: template}
    env = jinja2.Environment(
        # filename = the model's path, so a render error's traceback points at `file:line`
        loader=jinja2.FunctionLoader(lambda name: (templates[name], name, lambda: True) if name in templates else None),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        bytecode_cache=_COMPILED,
    )
    env.globals.update(context)
    try:
        for macro in macros:
            module = env.get_template(macro.file).make_module()
            env.globals.update({name: getattr(module, name) for name in macro.names})
        sql = env.get_template(file).render()
    except jinja2.TemplateSyntaxError as error:
        raise ModelError(f"{error.name or file}:{error.lineno}: Jinja syntax error: {error.message}") from None
    except jinja2.TemplateError as error:
        raise ModelError(f"{_template_line(error, templates, file)}: {error.message or error}") from None
    except ModelError as error:
        raise ModelError(f"{_template_line(error, templates, file)}: {error}") from None
    return sql.strip().rstrip(";").rstrip()


def _template_line(error: BaseException, templates: Mapping[str, str], default: str) -> str:
    """`file:line` of the innermost template frame of a render error (Jinja keeps them)."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename in templates:
            return f"{frame.filename}:{frame.lineno}"
    return default


# ---------- SQL: one SELECT, portable to PostgreSQL


# Constructs sqlglot writes for PostgreSQL without complaint but PostgreSQL rejects (or runs
# with a different meaning): refused at load with the fix, instead of failing on the server.
_NOT_ON_POSTGRES: dict[type[exp.Expression], str] = {
    exp.ArgMax: "arg_max()/max_by(): use row_number() over (...) with qualify",
    exp.ArgMin: "arg_min()/min_by(): use row_number() over (...) with qualify",
    exp.Struct: "struct values ({...}, struct_pack): PostgreSQL has no STRUCT",
    exp.Typeof: "typeof()",
    exp.Contains: "contains(): use strpos(text, part) > 0",
    exp.DateBin: "time_bucket(): use date_trunc()",
    exp.ToDays: "to_days(): use n * interval 1 day",
    exp.First: "first(): use min()/max() or row_number()",
    exp.Last: "last(): use min()/max() or row_number()",
    exp.Mode: "mode(): no portable spelling",
    exp.Format: "format(): use || or concat()",
    exp.UnixToTime: "epoch_ms()/to_timestamp(ms): use to_timestamp(seconds)",
}
_DUCKDB_ONLY_FUNCTIONS = frozenset(
    {"hash", "printf", "date_sub", "century", "product", "epoch_us", "epoch_ns", "list_sum"}
)
_DUCKDB_ONLY_TYPES = frozenset(
    t for t in exp.DataType.Type if t.name.startswith("U") and t.name not in {"UNKNOWN", "USERDEFINED", "UUID", "UNION"}
) | {exp.DataType.Type.INT128, exp.DataType.Type.INT256}


def parse_select(sql: str, *, file: str) -> exp.Query:
    """Parse rendered SQL (DuckDB dialect) and prove it is exactly one query."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except ParseError as error:
        raise ModelError(f"{file}: {_parse_error(error)}") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        found = ", ".join(type(s).__name__.upper() for s in statements) or "nothing"
        raise ModelError(f"{file}: a model is exactly one SELECT; found {found}")
    return statements[0]


def check_portable(tree: exp.Expression, *, file: str) -> None:
    """Refuse DuckDB-only constructs that sqlglot would pass to PostgreSQL unchanged."""
    for node in tree.walk():
        hint = _NOT_ON_POSTGRES.get(type(node))
        if hint is None and isinstance(node, exp.Anonymous) and node.name.lower() in _DUCKDB_ONLY_FUNCTIONS:
            hint = f"{node.name.lower()}(): DuckDB only"
        if hint is None and isinstance(node, exp.Star) and (node.args.get("except_") or node.args.get("replace")):
            hint = "select * exclude/replace: list the columns"
        if hint is None and isinstance(node, exp.Group) and node.args.get("all"):
            hint = "group by all: list the grouping columns"
        if hint is None and isinstance(node, exp.DataType) and node.this in _DUCKDB_ONLY_TYPES:
            hint = f"type {node.this.name}: use bigint, numeric or double"
        if hint is not None:
            raise ModelError(f"{file}: cannot run on PostgreSQL: {hint} (near `{node.sql('duckdb')[:60]}`)")


ColumnsOf = Callable[[str, str], Sequence[tuple[str, str]]]


def to_dialect(sql: str, dialect: str, *, file: str, columns_of: ColumnsOf | None = None) -> str:
    """Return `sql` (DuckDB SQL) for `dialect`: unchanged for DuckDB, transpiled for PostgreSQL.

    PostgreSQL has no QUALIFY: sqlglot moves the filter into a subquery with an extra `_w`
    column, which a `select *` would then leak into the output. `columns_of(schema, table)`
    (the warehouse's columns) lets sqlglot expand those stars; without it, a `select *` with
    `qualify` is refused.
    """
    if dialect not in DIALECTS:
        raise ModelError(f"{file}: unknown dialect {dialect!r}")
    if dialect == "duckdb":
        return sql
    return _write_postgres(parse_select(sql, file=file), file=file, columns_of=columns_of)


def _write_postgres(tree: exp.Query, *, file: str, columns_of: ColumnsOf | None) -> str:
    try:
        if columns_of is not None and tree.find(exp.Qualify):
            tree = _expand_stars(tree, columns_of)
        for select in tree.find_all(exp.Select):
            if select.args.get("qualify") and any(p.is_star for p in select.expressions):
                if columns_of is not None:
                    raise ModelError(
                        f"{file}: `select *` with `qualify` on a relation whose columns are unknown: list the columns"
                    )
        tree = tree.transform(_postgres_fixes)
        return tree.sql(dialect="postgres", pretty=True, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as error:
        raise ModelError(f"{file}: sqlglot cannot write this for PostgreSQL: {error}") from None
    except SqlglotError as error:
        raise ModelError(f"{file}: sqlglot failed to transpile to PostgreSQL: {error}") from None


def _postgres_fixes(node: exp.Expression) -> exp.Expression:
    """Rewrite the few constructs sqlglot 30 writes wrongly for PostgreSQL (found by the parity tests)."""
    if isinstance(node, exp.DateFromParts):  # sqlglot writes DATE_FROM_PARTS, which PostgreSQL lacks
        return exp.Anonymous(this="make_date", expressions=[node.args["year"], node.args["month"], node.args["day"]])
    if isinstance(node, exp.Round) and node.args.get("decimals") is not None:
        # PostgreSQL rounds to n digits only for numeric; DuckDB returns double
        as_numeric = exp.cast(node.this.copy(), exp.DataType.build("numeric"))
        rounded = exp.Round(this=as_numeric, decimals=node.args["decimals"].copy())
        return exp.cast(rounded, exp.DataType.build("double precision", dialect="postgres"))
    if isinstance(node, exp.Interval) and not isinstance(node.this, exp.Literal) and node.unit is not None:
        # `interval (n) day` is written as `INTERVAL DAY`, dropping n: use n * interval '1 day'
        one = exp.Interval(this=exp.Literal.string("1"), unit=node.unit.copy())
        count = node.this.copy() if isinstance(node.this, exp.Paren) else exp.Paren(this=node.this.copy())
        return exp.Mul(this=count, expression=one)
    if isinstance(node, exp.DayOfWeek):  # DuckDB and PostgreSQL both count Sunday as 0
        return exp.cast(exp.Extract(this=exp.var("DOW"), expression=node.this.copy()), exp.DataType.build("bigint"))
    return node


def _expand_stars(tree: exp.Query, columns_of: ColumnsOf) -> exp.Query:
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for table in tree.find_all(exp.Table):
        if table.db and table.name:
            columns = columns_of(table.db, table.name)
            if columns:
                # types do not matter for star expansion; the warehouse's spellings would not all parse
                schema.setdefault(table.db, {})[table.name] = {name: "text" for name, _type in columns}
    return qualify(tree, schema=schema, dialect="duckdb", validate_qualify_columns=False)


def _output_columns(tree: exp.Query) -> tuple[str, ...] | None:
    """The model's output column names, or None where a `*` hides them.

    Follows the jaffle-shop idiom `select * from final` into the CTE it names; a star over
    a table (whose columns only the warehouse knows) gives None.
    """
    while isinstance(tree, exp.Select) and any(p.is_star for p in tree.expressions):
        source = tree.args.get("from_") or tree.args.get("from")
        ctes = {cte.alias: cte.this for cte in tree.ctes}
        if (
            len(tree.expressions) != 1 or tree.args.get("joins") or source is None
            or not isinstance(source.this, exp.Table) or source.this.db or source.this.name not in ctes
        ):
            return None
        inner = ctes[source.this.name]
        if isinstance(inner, exp.Select) and not inner.ctes and tree.ctes:
            inner = inner.copy()
            inner.set("with_", tree.args.get("with_").copy() if tree.args.get("with_") else None)
        tree = inner
    names = tuple(tree.named_selects)
    return None if "*" in names or "" in names else names


def _parse_error(error: ParseError) -> str:
    details = error.errors[0] if error.errors else {}
    if not details:
        return f"sqlglot cannot parse the rendered SQL: {str(error).splitlines()[0]}"
    near = str(details.get("highlight") or "").strip()
    return (
        f"sqlglot cannot parse the rendered SQL at line {details.get('line')}, column {details.get('col')}: "
        f"{details.get('description')}" + (f" near `{near}`" if near else "")
    )
