"""Pattern 4's command line: one stage of the CD cycle per call, the same
commands in GitHub Actions (.github/workflows/p4-cd.yml), the Makefile's
p4-* targets and the README.

    python release.py build      build (and push) this commit's release (release.py)
    python release.py validate   check every deployment in prefect.yaml, no server needed (deploy.py)
    python release.py deploy     `prefect deploy --all` from prefect.yaml, then check the result (deploy.py)
    python release.py run        run p4-retrain, wait, check the model; then p4-batch-score (verify.py)

`python release.py` runs main() below. Each stage prints a short summary on
stdout (the run stage ends with the `Result:` line), progress on stderr, and
an error as `error:` and `fix:` lines with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import httpx

from deploy import deploy, validate
from errors import P4Error
from release import build, push
from settings import load_settings
from verify import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="\n\n".join(__doc__.split("\n\n")[:2]), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("stage", choices=["build", "validate", "deploy", "run"])
    args = parser.parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings = load_settings()
    os.environ.update(settings.prefect_env())
    try:
        if args.stage == "build":
            built = build(settings)
            pushed = push(settings, built)
            print(f"built release {built['release']} as {built['artifact']}; workers pull it from {pushed['code_dir']}")
        elif args.stage == "validate":
            for item in validate():
                sched = ", ".join(s.get("cron", str(s)) for s in item["schedules"]) or "on demand"
                print(f"ok  {item['flow']}/{item['name']}  params={json.dumps(item['parameters'])}  schedule={sched}")
        elif args.stage == "deploy":
            out = deploy(settings)
            for d in out["deployments"]:
                print(f"deployed {d['name']}  version={d['version']}  pool={d['pool']}  id={d['id']}")
        else:
            out = run(settings)
            base = settings.prefect_api_url.removesuffix("/api")
            print(f"retrain run     {out['retrain_run'].name}  {base}/runs/flow-run/{out['retrain_run'].id}")
            print(f"model           {out['card']['model_url']}  accuracy={out['card']['metrics']['accuracy']}")
            if out["mode"] == "image":
                print(
                    f"ran in image    {out['card']['artifact']}  {out['card']['image_id']}  (uid {out['card']['uid']})"
                )
            print(f"batch-score run {out['score_run'].name}  {out['rows']} rows -> {out['predictions']}")
            print(
                f"Result: pattern=p4 status=ok release={out['release']} mode={out['mode']} "
                f"retrain_run={out['retrain_run'].id} "
                f"new_run={str(out['new_run']).lower()} state={out['retrain_run'].state.type.value} "
                f"model={out['card']['model_url']} accuracy={out['card']['metrics']['accuracy']} "
                f"score_run={out['score_run'].id} rows={out['rows']}"
            )
    except P4Error as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except httpx.TransportError as exc:  # the server went away mid-stage (restarted, network cut)
        lost = P4Error(
            f"the Prefect API at {settings.prefect_api_url} stopped answering during the {args.stage} stage "
            f"({type(exc).__name__}: {exc})",
            "when it answers again, run the stage again: a flow run this release already completed is reused, "
            "not run twice",
        )
        print(lost.render(), file=sys.stderr)
        return 1
    return 0
