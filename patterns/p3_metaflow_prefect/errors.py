"""One error type for everything a user can fix: what is wrong, and how to fix
it; and the mapping from a failed Metaflow run (or fan-out) to that error."""

from __future__ import annotations


class P3Error(RuntimeError):
    def __init__(self, problem: str, fix: str):
        super().__init__(f"{problem.rstrip('.')}. Fix: {fix.rstrip('.')}.")
        self.problem = problem
        self.fix = fix

    def __reduce__(self):  # Prefect may pickle a failed task's exception
        return (type(self), (self.problem, self.fix))

    def render(self) -> str:
        return f"error: {self.problem}\n  fix: {self.fix}"


def describe_failure(pathspec: str, stderr: str, s3_endpoint_url: str) -> P3Error:
    """'Metaflow run X failed in task X/step/id: <the exception>', from the Client,
    with the fix that fits the cause."""
    from metaflow import Run, namespace

    namespace(None)
    where, error = pathspec, ""
    for step in Run(pathspec):
        for task in step:
            if not task.successful:
                where, error = task.pathspec, exception_line(task.stderr)
    error = error or exception_line(stderr) or tail(stderr, 5) or "no error text"
    if "Could not connect to the endpoint URL" in error or "EndpointConnectionError" in error:
        fix = f"Metaflow cannot reach S3 at {s3_endpoint_url}: `make up`, or fix P3_S3_ENDPOINT_URL"
    elif "bad parameter" in error:
        fix = "pass values inside the ranges named (flow.py --grid N_ESTIMATORSxMAX_DEPTH,... --folds N)"
    else:
        fix = f"read the task's log: python trainflow.py logs {where.split('/', 1)[1]}"
    place = f"in task {where}" if where != pathspec else "before its first step"
    return P3Error(f"Metaflow run {pathspec} failed {place}: {error}", fix)


def not_started(flow_name: str, stderr: str) -> P3Error:
    """The Metaflow CLI exited before it allocated a run id."""
    return P3Error(
        f"Metaflow did not start a run of {flow_name}: {exception_line(stderr) or tail(stderr, 6)}",
        "check the parameters and the Metaflow settings in .env.example",
    )


def fan_out_failed(failed: dict[str, object], total: int) -> P3Error:
    """`failed`: grid label -> the child flow run that ended without completing."""
    lines = [
        f"{label} (flow run {c.name}, {c.id}) {c.state.type.value}: "
        + (c.state.message or "").removeprefix("Flow run encountered an exception: ").removeprefix("P3Error: ")
        for label, c in failed.items()
    ]
    return P3Error(
        f"{len(failed)} of {total} training runs failed, so none was compared or published:\n  " + "\n  ".join(lines),
        "each line names the Metaflow run or task and its own fix; the others finished and stay in Metaflow",
    )


def exception_line(text: str) -> str:
    """The last 'SomeError: message' line of a traceback."""
    for line in reversed(text.splitlines()):
        head = line.strip().split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and ":" in line:
            return line.strip()
    return ""


def tail(text: str, lines: int) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())
