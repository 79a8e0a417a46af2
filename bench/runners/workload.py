"""The decision matrix's workload: the same small, fixed computation in every runner.

A task is `step(value, i)`: ROUNDS rounds of SHA-256 over the previous digest,
pure CPU, about 30 ms on these machines, standard library only. Two shapes of
N = 10 tasks (fixed: Metaflow's steps and the KFP join are written out):

- chain:  v0 = SEED, v_i = step(v_{i-1}, i) for i = 1..N; the result is v_N
          (N tasks, each waiting for the one before);
- fanout: l_i = step(SEED, i) for i = 1..N, independent of each other, then
          one join task join(l_1..l_N) (N + 1 tasks).

BENCH_ROUNDS overrides ROUNDS (the tests use a tiny workload; the benchmark
never sets it).

Every runner must return exactly `expected(shape, n)`: the tests check that,
so a runner that skips work or reorders it cannot pass for a fast one.
This module is imported by every runner except the KFP one, whose components
must be self-contained source (kfp.local runs them as new processes from
their source text): bench/runners/kfp_runner.py repeats these six lines and
its test compares its result with this module's.
"""

from __future__ import annotations

import hashlib
import os

SEED = "hybrid-ml-patterns"
ROUNDS = int(os.environ.get("BENCH_ROUNDS") or 100_000)
N = 10
SHAPES = ("chain", "fanout")


def step(value: str, i: int, rounds: int = ROUNDS) -> str:
    digest = f"{value}:{i}".encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


def join(values: list[str]) -> str:
    return hashlib.sha256("|".join(values).encode()).hexdigest()


def task_count(shape: str) -> int:
    return N if shape == "chain" else N + 1


def expected(shape: str, rounds: int = ROUNDS) -> str:
    """The plain-Python answer: what every runner must return."""
    if shape == "chain":
        value = SEED
        for i in range(1, N + 1):
            value = step(value, i, rounds)
        return value
    if shape == "fanout":
        return join([step(SEED, i, rounds) for i in range(1, N + 1)])
    raise ValueError(f"unknown shape {shape!r}: use one of {', '.join(SHAPES)}")
