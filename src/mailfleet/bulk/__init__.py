"""Bulk connect: thousands of mailboxes in one request, verified by one durable job.

A package of its own rather than files in mailboxes/: it has its own tables,
routes (/v1/mailboxes/bulk, /v1/jobs), file formats and workflow, and it uses
the mailbox service (create, credentials, record a test) as any caller would.
"""
