"""One error type for everything a user can fix: what is wrong, and how to fix it.

`explain()` maps the other failures a user can fix (a bad setting, the MLflow
server lost mid-run) to one, so the command line prints the problem and the
fix instead of a traceback.
"""

from __future__ import annotations


class P1Error(RuntimeError):
    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}. Fix: {fix}.")
        self.problem = problem
        self.fix = fix

    def __reduce__(self):  # Prefect may pickle a failed task's exception
        return (type(self), (self.problem, self.fix))

    def render(self) -> str:
        return f"error: {self.problem}\n  fix: {self.fix}"


def explain(exc: BaseException, mlflow_tracking_uri: str = "") -> P1Error | None:
    """The P1Error for `exc`, or None when it is not one a user can fix."""
    from pydantic import ValidationError

    if isinstance(exc, P1Error):
        return exc
    if isinstance(exc, ValidationError) and exc.title == "P1Settings":
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}={e['input']!r}: {e['msg']}" for e in exc.errors())
        return P1Error(f"invalid setting {problems}", "correct it in the environment or .env (see .env.example)")
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        # The tracking server went away mid-run for longer than the client's
        # retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES) cover: nothing was registered
        # unless the registry said so, and a rerun trains again (no FINISHED run).
        return P1Error(
            f"the MLflow tracking server at {mlflow_tracking_uri} failed mid-run: {str(exc)[:500]}",
            "check it answers (`make status`), then run again: an unfinished run is never reused",
        )
    return None
