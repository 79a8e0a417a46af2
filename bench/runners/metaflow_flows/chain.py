"""The decision matrix's chain as a Metaflow flow: start -> step_1 .. step_10 -> end.

Every step is a Metaflow task: a new process, its artifacts (`value`)
written to the datastore and read back by the next step. start and end are
Metaflow's required steps and do no work. The ten steps are written out:
Metaflow reads the graph from this file's source. Run by
bench/runners/metaflow_runner.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # workload.py, one folder up

import workload  # noqa: E402
from metaflow import FlowSpec, step  # noqa: E402


class BenchChainFlow(FlowSpec):
    @step
    def start(self):
        assert workload.N == 10, "the ten steps are written out below: change them with workload.N"
        self.value = workload.SEED
        self.next(self.step_1)

    @step
    def step_1(self):
        self.value = workload.step(self.value, 1)
        self.next(self.step_2)

    @step
    def step_2(self):
        self.value = workload.step(self.value, 2)
        self.next(self.step_3)

    @step
    def step_3(self):
        self.value = workload.step(self.value, 3)
        self.next(self.step_4)

    @step
    def step_4(self):
        self.value = workload.step(self.value, 4)
        self.next(self.step_5)

    @step
    def step_5(self):
        self.value = workload.step(self.value, 5)
        self.next(self.step_6)

    @step
    def step_6(self):
        self.value = workload.step(self.value, 6)
        self.next(self.step_7)

    @step
    def step_7(self):
        self.value = workload.step(self.value, 7)
        self.next(self.step_8)

    @step
    def step_8(self):
        self.value = workload.step(self.value, 8)
        self.next(self.step_9)

    @step
    def step_9(self):
        self.value = workload.step(self.value, 9)
        self.next(self.step_10)

    @step
    def step_10(self):
        self.value = workload.step(self.value, 10)
        self.next(self.end)

    @step
    def end(self):
        self.result = self.value


if __name__ == "__main__":
    BenchChainFlow()
