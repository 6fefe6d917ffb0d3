"""Logging: one format for every logger (DBOS's included), level from
MAILFLEET_LOG_LEVEL, plain text or JSON lines from MAILFLEET_LOG_FORMAT.

Every line a request causes carries its request id (a context variable the
request-id middleware sets). Lines logged inside a DBOS workflow or step carry
the workflow id, and the id of the request that enqueued it when that request
was served by this process (`jobs.enqueue` records the pair and logs it too, so
`grep` on a request id finds the workflow ids it started, whatever process ran
them).

Nothing here logs a request body, a header or a secret; modules log ids.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# The id of the request being served; None outside requests.
request_id_var: ContextVar[str | None] = ContextVar("mailfleet_request_id", default=None)

# Workflow id -> the request id that enqueued it, for workflows started by
# requests of this process. Bounded: it only decorates log lines.
_WORKFLOW_ORIGINS_MAX = 10_000
_workflow_origins: OrderedDict[str, str] = OrderedDict()

# Fields a log call may pass with `extra=` that the JSON format writes as keys.
STRUCTURED_FIELDS = ("method", "path", "status", "duration_ms", "queue", "workflow")


def remember_workflow_origin(workflow_id: str, request_id: str) -> None:
    _workflow_origins[workflow_id] = request_id
    _workflow_origins.move_to_end(workflow_id)
    while len(_workflow_origins) > _WORKFLOW_ORIGINS_MAX:
        _workflow_origins.popitem(last=False)


def _current_workflow_id() -> str | None:
    try:
        from dbos import DBOS

        workflow_id: str | None = DBOS.workflow_id
    except Exception:  # no DBOS context machinery at all: not in a workflow
        return None
    return workflow_id


def _with_context(factory: Any) -> Any:
    """Wrap the log-record factory so that every record, whichever handler sees
    it, carries `request_id` and `workflow_id` (None when absent)."""

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = factory(*args, **kwargs)
        request_id = request_id_var.get()
        workflow_id = _current_workflow_id()
        if request_id is None and workflow_id is not None:
            request_id = _workflow_origins.get(workflow_id)
        record.request_id = request_id
        record.workflow_id = workflow_id
        return record

    make_record._mailfleet = True  # type: ignore[attr-defined]
    return make_record


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        suffix = ""
        for name in ("request_id", "workflow_id"):
            value = getattr(record, name, None)
            if value and f"{name}=" not in record.getMessage():
                suffix += f" {name}={value}"
        if not suffix:
            return line
        # After the message's first line, so a traceback stays below it.
        first, newline, rest = line.partition("\n")
        return first + suffix + newline + rest


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids, and the
    structured fields a call passed (the access line's method, path, status...)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("request_id", "workflow_id", *STRUCTURED_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _QuietDbosMigrations(logging.Filter):
    # DBOS logs one INFO line per system-database migration (64 on a new
    # database); they matter only when debugging the job engine.
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        return not str(record.msg).startswith("Applying DBOS")


_dbos_filter = _QuietDbosMigrations()


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_mailfleet", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._mailfleet = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if not getattr(logging.getLogRecordFactory(), "_mailfleet", False):
        logging.setLogRecordFactory(_with_context(logging.getLogRecordFactory()))
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.setLevel(level)
    # httpx logs full URLs, which may carry tokens in query strings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic announces each of its plugins at INFO; the upgrades it runs stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # DBOS's lines go through our handler, in our format: a handler of its own
    # (DBOS adds one only to a logger that has none) would print another format.
    dbos = logging.getLogger("dbos")
    if not dbos.handlers:
        dbos.addHandler(logging.NullHandler())
    dbos.propagate = True
    if _dbos_filter not in dbos.filters:
        dbos.addFilter(_dbos_filter)
