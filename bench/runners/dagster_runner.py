"""The workload as Dagster software-defined assets, materialized in-process: one asset per step.

`materialize()` is Dagster's own way to run assets from Python (tests, scripts):
a single-process run on an ephemeral instance (an in-memory event log), each
asset's output type-checked (`-> str`) and written by the default filesystem
IO manager, read back by the next asset. No `dagster dev` (webserver, daemon)
runs. The chain is ten assets, each reading the one before; the fan-out is ten
independent leaves and a join asset reading all ten. The join takes ten named
inputs, as the KFP one does: an asset's inputs are its function parameters.
Runs in its own environment, bench/envs/dagster.
"""

import tempfile
import time

import protocol
import workload

shape = protocol.shape_from_argv("dagster")
from dagster import AssetIn, AssetsDefinition, DagsterInstance, asset, materialize  # noqa: E402 - timed: the tool's import


def chain_assets() -> list[AssetsDefinition]:
    assets = []

    @asset(name="step_1")
    def first() -> str:
        return workload.step(workload.SEED, 1)

    assets.append(first)
    for i in range(2, workload.N + 1):

        def make(i: int) -> AssetsDefinition:
            @asset(name=f"step_{i}", ins={"value": AssetIn(f"step_{i - 1}")})
            def next_step(value: str) -> str:
                return workload.step(value, i)

            return next_step

        assets.append(make(i))
    return assets


def fanout_assets() -> list[AssetsDefinition]:
    def make(i: int) -> AssetsDefinition:
        @asset(name=f"leaf_{i}")
        def leaf() -> str:
            return workload.step(workload.SEED, i)

        return leaf

    assert workload.N == 10, "join() takes exactly ten values: change it with workload.N"

    @asset(name="joined", ins={f"v{i}": AssetIn(f"leaf_{i}") for i in range(1, workload.N + 1)})
    def joined(v1: str, v2: str, v3: str, v4: str, v5: str, v6: str, v7: str, v8: str, v9: str, v10: str) -> str:
        return workload.join([v1, v2, v3, v4, v5, v6, v7, v8, v9, v10])

    return [make(i) for i in range(1, workload.N + 1)] + [joined]


assets = chain_assets() if shape == "chain" else fanout_assets()
last = "step_10" if shape == "chain" else "joined"
imported = time.perf_counter()
with tempfile.TemporaryDirectory() as home:
    started = time.perf_counter()
    # An ephemeral instance in a temporary folder: the filesystem IO manager writes
    # each output under it, and nothing is left behind.
    result = materialize(assets, instance=DagsterInstance.ephemeral(tempdir=home))
    finished = time.perf_counter()
    if not result.success:
        raise SystemExit("error: the Dagster run failed")
    value = result.output_for_node(last)
protocol.report("dagster", shape, value, imported, started, finished)
