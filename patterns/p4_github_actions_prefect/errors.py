"""One error type for everything a user can fix: what is wrong, and how to fix it."""

from __future__ import annotations


class P4Error(RuntimeError):
    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}. Fix: {fix}.")
        self.problem = problem
        self.fix = fix

    def __reduce__(self):  # Prefect may pickle a failed task's exception
        return (type(self), (self.problem, self.fix))

    def render(self) -> str:
        return f"error: {self.problem}\n  fix: {self.fix}"
