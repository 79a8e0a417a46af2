"""What a user reads: one error type for everything they can fix (what is
wrong, and how to fix it), and progress lines on stderr."""

from __future__ import annotations

import sys


class P4Error(RuntimeError):
    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem}. Fix: {fix}.")
        self.problem = problem
        self.fix = fix

    def __reduce__(self):  # Prefect may pickle a failed task's exception
        return (type(self), (self.problem, self.fix))

    def render(self) -> str:
        return f"error: {self.problem}\n  fix: {self.fix}"


def say(message: str) -> None:
    # Progress goes to stderr: prefect.yaml's steps and a CI log both show it,
    # and stdout stays for the summary and the Result line.
    print(message, file=sys.stderr, flush=True)
