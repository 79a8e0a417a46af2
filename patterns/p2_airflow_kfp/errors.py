"""One error type for everything a user can fix: what is wrong, and how to fix it."""

from __future__ import annotations

import functools


class P2Error(RuntimeError):
    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}. Fix: {fix}.")
        self.problem = problem
        self.fix = fix

    def __reduce__(self):  # Airflow may pickle a failed task's exception
        return (type(self), (self.problem, self.fix))

    def render(self) -> str:
        return f"error: {self.problem}\n  fix: {self.fix}"


def fail_fast(func):
    """For the DAG's tasks: a user-fixable error (P2Error: what is wrong and
    the fix) fails the task at once, with that message: no retry can fix it."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except P2Error as exc:
            # Imported here: this module is imported where airflow is not (the REST harness).
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc

    return wrapper
