"""A response model's rows rendered to JSON by the database, for a large list page.

A list page of 100 mailboxes spent about 40% of its CPU in Python turning columns
into JSON: SQLAlchemy's result processors parsed each row's timestamps and JSON,
then `RowRenderer` formatted the timestamps back and pydantic-core wrote it all.
`json_row` builds one SQL expression that gives each row as the JSON text the model
would render (`json_object` on SQLite, `json_build_object` on PostgreSQL, timestamps
formatted in SQL as `kit.clock.isoformat` does), so a page is one text column a row,
joined into the envelope as it comes. The route keeps the model as its
`response_model` (the docs are the model's), and a test holds the database's JSON to
the model's own dump on both databases.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from sqlalchemy import Boolean, String, Text, literal, null
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import GenericFunction

from mailfleet.kit.envelope import renders_timestamp

# PostgreSQL's json_build_object takes at most 100 arguments (a key and a value each).
JSON_ROW_MAX_ARGUMENTS = 100


class json_row(GenericFunction[str]):
    """An object from (key, value, key, value...), as JSON text."""

    type = Text()
    name = "json_object"
    inherit_cache = True


@compiles(json_row, "postgresql")
def _json_row_on_postgresql(element: json_row, compiler: SQLCompiler, **kw: Any) -> str:
    # As text: the driver hands json back as a string either way, but only text is
    # sure not to be decoded on the way.
    return f"json_build_object({compiler.process(element.clauses, **kw)})::text"


class json_timestamp(GenericFunction[str]):
    """A UTC timestamp as the API writes it, `2026-01-01T00:04:39.123Z`: milliseconds
    cut, not rounded, as `kit.clock.isoformat` cuts them. SQLite holds the text
    SQLAlchemy wrote (`2026-01-01 00:04:39.123456`): its first 23 characters, which
    `strftime('%f')` would round instead; other text (none is written) goes through
    strftime."""

    type = String()
    name = "json_timestamp"
    inherit_cache = True


@compiles(json_timestamp, "sqlite")
def _json_timestamp_on_sqlite(element: json_timestamp, compiler: SQLCompiler, **kw: Any) -> str:
    value = compiler.process(element.clauses, **kw)
    return (
        f"CASE WHEN length({value}) = 26 THEN replace(substr({value}, 1, 23), ' ', 'T') || 'Z'"
        f" ELSE strftime('%Y-%m-%dT%H:%M:%fZ', {value}) END"
    )


@compiles(json_timestamp, "postgresql")
def _json_timestamp_on_postgresql(element: json_timestamp, compiler: SQLCompiler, **kw: Any) -> str:
    value = compiler.process(element.clauses, **kw)
    return f"""to_char(({value}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


class json_bool(GenericFunction[bool]):
    """A boolean as JSON true or false (SQLite has none: it stores 0 and 1)."""

    type = Boolean()
    name = "json_bool"
    inherit_cache = True


@compiles(json_bool, "sqlite")
def _json_bool_on_sqlite(element: json_bool, compiler: SQLCompiler, **kw: Any) -> str:
    value = compiler.process(element.clauses, **kw)
    return f"json(CASE WHEN {value} THEN 'true' WHEN {value} IS NULL THEN 'null' ELSE 'false' END)"


@compiles(json_bool, "postgresql")
def _json_bool_on_postgresql(element: json_bool, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


class json_value(GenericFunction[Any]):
    """A JSON value (a JSON column, or an aggregate's array) set into the object as
    JSON, not as a string holding it. `default`, a JSON literal, stands for SQL NULL
    (json_agg over no rows is NULL on PostgreSQL)."""

    type = Text()
    name = "json_value"
    inherit_cache = True


@compiles(json_value, "sqlite")
def _json_value_on_sqlite(element: json_value, compiler: SQLCompiler, **kw: Any) -> str:
    value, default = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"json(coalesce({value}, {default}))"


@compiles(json_value, "postgresql")
def _json_value_on_postgresql(element: json_value, compiler: SQLCompiler, **kw: Any) -> str:
    value, default = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"coalesce(({value})::json, ({default})::json)"


def _is(annotation: Any, kind: type) -> bool:
    """Whether `annotation` is `kind`, or `kind | None`."""
    if annotation is kind or get_origin(annotation) is kind:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is(arg, kind) for arg in get_args(annotation) if arg is not type(None))
    return False


def model_json(
    model: type[BaseModel],
    columns: Mapping[str, ColumnElement[Any]],
    sources: Mapping[str, ColumnElement[Any]],
) -> json_row:
    """Each row as the JSON `model` renders for it: every field of `model` read from
    `sources` (SQL for computed fields), else from the column of its name, else its
    default; keyed by wire name. Fields left out by value (`exclude_if`) are left out:
    a row never carries them. A JSON column or list is set in as JSON (`json_value`).
    At most 50 fields: PostgreSQL's limit on `json_build_object`'s arguments."""
    pairs: list[ColumnElement[Any]] = []
    for name, field in model.model_fields.items():
        if field.exclude or field.exclude_if is not None:
            continue
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            raise TypeError(f"{model.__name__}.{name} is a model: not a flat row")
        wire = field.serialization_alias or field.alias or name
        value = sources.get(name, columns.get(name))
        if value is None:
            default = field.get_default()
            if default is not None and not isinstance(default, bool | int | str):
                raise TypeError(f"{model.__name__}.{name}: no column and no plain default")
            value = null() if default is None else literal(default)
        if renders_timestamp(field):
            value = json_timestamp(value)
        elif _is(field.annotation, bool):
            value = json_bool(value)
        elif _is(field.annotation, dict) or _is(field.annotation, list):
            value = json_value(value, literal("null" if _is(field.annotation, dict) else "[]"))
        pairs += [literal(wire, String()), value]
    if len(pairs) > JSON_ROW_MAX_ARGUMENTS:
        raise TypeError(f"{model.__name__} has over {JSON_ROW_MAX_ARGUMENTS // 2} fields")
    return json_row(*pairs)
