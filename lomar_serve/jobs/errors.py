"""Exceptions of the model lifecycle (jobs, deployments, admin access).

They extend `lomar_serve.common.errors.ServiceError`, so each carries its HTTP status and code and the control
plane's error handlers (`lomar_serve.common.error_handlers`) turn them into `{"error": {"code", "message"}}` at the
route edge; the worker and the CLI use them as plain exceptions.
"""
from __future__ import annotations

from lomar_serve.common.errors import ServiceError


class LifecycleError(ServiceError):
    """Base of every lifecycle error."""

    status, code = 400, "lifecycle_error"


class AdminDisabled(LifecycleError):
    """No admin token is configured: the admin API refuses everything and says how to enable it."""

    status, code = 403, "admin_disabled"


class PathNotAllowed(LifecycleError):
    """A request path outside the configured data roots (or one that does not exist there)."""

    status, code = 403, "path_not_allowed"


class InvalidName(LifecycleError):
    """A model name or version that is not of the allowed form (no path traversal through names)."""

    status, code = 422, "invalid_name"


class OverMemoryBudget(LifecycleError):
    """A job whose model, at its batch size and resolution, would need more memory than the job budget."""

    status, code = 422, "over_memory_budget"


class JobNotFound(LifecycleError):
    status, code = 404, "job_not_found"


class KeyNotFound(LifecycleError):
    status, code = 404, "key_not_found"


class ReportNotFound(LifecycleError):
    """The job has no evaluation report (its verification stage has not run), or no such thumbnail."""

    status, code = 404, "report_not_found"


class JobConflict(LifecycleError):
    """The job is not in a state that allows the operation (cancel a finished job, resume a running one)."""

    status, code = 409, "job_conflict"


class VersionNotFound(LifecycleError):
    """The model or version does not exist in the model repository."""

    status, code = 404, "version_not_found"


class DeployError(LifecycleError):
    """A deploy or rollback did not complete; the version that served before still serves."""

    status, code = 409, "deploy_failed"


class NothingToRollBack(LifecycleError):
    status, code = 409, "nothing_to_roll_back"


class SwitchInProgress(LifecycleError):
    """Another deploy, rollback or reconcile step is changing what the fleet serves: refused at once rather than
    queued, so that no switch runs after its client has given up waiting for it."""

    status, code = 409, "switch_in_progress"


class HistoryConflict(LifecycleError):
    """The deploy history disagreed with the version config.pbtxt publishes (an interrupted switch, a hand edit);
    it has been repaired, and the caller decides again with the repaired history in front of it."""

    status, code = 409, "deploy_history_conflict"


class StoreUnavailable(LifecycleError):
    """The job store (a SQLite file or a PostgreSQL database) cannot be opened or reached."""

    status, code = 503, "store_unavailable"
