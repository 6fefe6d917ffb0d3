"""Bulk job look-ups."""

from __future__ import annotations

from mailfleet.kit.repository import Repository
from mailfleet.models import BulkJob


class BulkJobRepository(Repository[BulkJob], model=BulkJob, noun="Job"): ...
