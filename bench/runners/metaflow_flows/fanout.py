"""The decision matrix's fan-out as a Metaflow flow: start -> foreach leaf (10) -> join -> end.

The ten leaves are one foreach step: ten Metaflow tasks, run as parallel
processes (Metaflow's local runtime runs up to --max-workers, 16 by default,
at once; this machine has two cores). start and end do no work. Run by
bench/runners/metaflow_runner.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # workload.py, one folder up

import workload  # noqa: E402
from metaflow import FlowSpec, step  # noqa: E402


class BenchFanoutFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(1, workload.N + 1))
        self.next(self.leaf, foreach="items")

    @step
    def leaf(self):
        self.i = self.input
        self.value = workload.step(workload.SEED, self.i)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.result = workload.join([inp.value for inp in sorted(inputs, key=lambda inp: inp.i)])
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BenchFanoutFlow()
