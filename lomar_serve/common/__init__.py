"""Plumbing every `lomar` role shares: processes and logging, settings helpers, the HTTP error format, the
request-header timeout, and the version holds kept in the shared model repository."""
