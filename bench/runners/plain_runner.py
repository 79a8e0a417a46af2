"""The baseline: the workload as a plain Python loop, no orchestrator."""

import time

import protocol
import workload

shape = protocol.shape_from_argv("plain")
imported = time.perf_counter()
started = time.perf_counter()
result = workload.expected(shape)
protocol.report("plain", shape, result, imported, started, time.perf_counter())
