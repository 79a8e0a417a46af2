"""The KFP side's fast tests: the pipeline compiles to the expected IR, and
submit.py's parameters, errors and run-or-reuse decision, with no KFP server,
no S3 and no pipeline run. From this folder: `uv run pytest`."""

from __future__ import annotations

import os

# Compile-time variables (pipeline.py reads them when imported): the committed IR's defaults.
for _name in ("P2_KFP_IMAGE", "P2_CLUSTER_S3_SECRET", "P2_CLUSTER_S3_ENDPOINT_URL", "P2_TRAIN_ACCELERATOR"):
    os.environ.pop(_name, None)
