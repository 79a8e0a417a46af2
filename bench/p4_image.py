"""Pattern 4's CD cycle with each kind of build, side by side: `make pattern-4`
with a source snapshot, with the flow image on a cached base, and with the
flow image from nothing.

    make bench-p4-image             BENCH_REPEAT=3 rounds (part of `make bench`)

Each round runs the three, one after the other, on one local stack of the
bench's own (free loopback ports, a temporary state folder), each with a new
release (P4_GIT_SHA), so every stage does its work: a new snapshot or image,
a redeploy, a new retraining and batch-score run. Times are whole `make`
commands, wall clock; the stage times come from the output.

- source:             P4_BUILD=source, a process worker runs the snapshot.
- image, cached base: P4_BUILD=image after one untimed image build, so the
                      base image and the dependency layers are cached; only the
                      code layers are new. A Docker worker runs the image.
- image from nothing: the same, on a base image made anew (debootstrap and
                      `docker import`, tagged for the bench alone) and with no
                      layer cached. The wheelhouse is kept: it is a download
                      cache, like uv's (bench/compose.py times an empty one).

Needs a Docker engine (started as `make test-compose` does when none answers)
and, where no registry answers, builds air-gapped. Written to
bench/results/p4-image-<UTC>.json and bench/results/p4-image-latest.md.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from datetime import UTC, datetime

from run import (
    RESULTS,
    Bench,
    BenchError,
    Measure,
    _field,
    _int_env,
    failed,
    git_commit,
    machine,
    p4_stages,
    render,
)

BENCH_BASE = "local/debian:p4-bench"  # the from-nothing base: never the compose tier's
CACHED_REPO, COLD_REPO = "p4-flows-bench-cached", "p4-flows-bench-cold"


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True)


def remove_images(*repositories: str) -> None:
    """Every tag of these repositories and the bench's base, with the layers only they used."""
    for repository in repositories:
        for image in docker("images", repository, "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
            docker("rmi", "--force", image)
    docker("rmi", "--force", BENCH_BASE)


def cycle(bench: Bench, measure: Measure, *variables: str) -> None:
    """One timed `make pattern-4` for a new release; the stage times from its output."""
    seconds, output = bench.make("pattern-4", f"P4_GIT_SHA={secrets.token_hex(20)}", *variables)
    stages = p4_stages(bench.timeline, seconds)
    measure.samples.append(seconds)
    for stage, took in stages.items():
        measure.extra.setdefault("stage_s", {}).setdefault(stage, []).append(took)
    measure.extra.setdefault("mode", []).append(_field(output, "mode"))
    print(f"  {measure.key}: {seconds:6.1f} s  stages={stages}", flush=True)


def main() -> int:
    repeat = _int_env("BENCH_REPEAT", 3)
    bench = Bench(repeat, _int_env("BENCH_TIMEOUT", 1800))
    info = {**machine(), "commit": git_commit()}
    source = Measure("p4_cycle_source", "`make pattern-4`, source snapshot (process worker)")
    cached = Measure("p4_cycle_image_cached", "`make pattern-4`, flow image on a cached base (Docker worker)")
    cold = Measure("p4_cycle_image_cold", "`make pattern-4`, flow image from nothing (new base, no layer cached)")
    image = ("P4_BUILD=image", f"P4_IMAGE_REPO={CACHED_REPO}")
    print(f"state: {bench.tmp}  ports: {bench.ports}", flush=True)
    try:
        bench.up(bench.state_dir)
        print("warm-up (untimed): one source cycle and one image cycle", flush=True)
        bench.make("pattern-4", f"P4_GIT_SHA={secrets.token_hex(20)}")
        bench.make("pattern-4", f"P4_GIT_SHA={secrets.token_hex(20)}", *image)
        for i in range(repeat):
            print(f"round {i + 1}/{repeat}", flush=True)
            cycle(bench, source)
            cycle(bench, cached, *image)
            remove_images(COLD_REPO)
            cycle(bench, cold, "P4_BUILD=image", f"P4_IMAGE_REPO={COLD_REPO}", f"STACK_LOCAL_BASE={BENCH_BASE}")
    except BenchError as exc:
        return failed(bench, exc)
    finally:
        bench.cleanup()
        remove_images(CACHED_REPO, COLD_REPO)
    for m, want in ((source, "source"), (cached, "image"), (cold, "image")):
        if m.extra.get("mode") != [want] * repeat:
            m.notes.append(f"not every run built {want}: mode={m.extra.get('mode')}")
    cold.notes.append("air-gapped here: debootstrap of the base (about 30 s) and apt's python3; wheelhouse cached")
    summaries = [m.summary() for m in (source, cached, cold)]
    report = render(summaries, info, repeat)
    print("\n" + report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    data = {"repeat": repeat, "machine": info, "measures": summaries}
    (RESULTS / f"p4-image-{stamp}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "p4-image-latest.md").write_text(report)
    print(f"written: {RESULTS / f'p4-image-{stamp}.json'} and {RESULTS / 'p4-image-latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
