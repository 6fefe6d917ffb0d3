"""Hosted mailboxes: Mailfleet runs the mail server (Postfix + Dovecot) of its
self-hosted domains, which read Mailfleet's own tables through SQL views."""
