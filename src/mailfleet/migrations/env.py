"""Alembic environment: runs on the connection Mailfleet hands it."""

from __future__ import annotations

from alembic import context

import mailfleet.models  # noqa: F401  (registers every table)
from mailfleet.db import Base
from mailfleet.migrate import schema_filter

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `mailfleet migrate`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=schema_filter(connection.dialect.name),
)
with context.begin_transaction():
    context.run_migrations()
