"""Pattern 2, the Airflow side's work: extract, transform, load, publish.

Airflow owns the data movement: it reads the source, cleans it, and loads one
dataset per logical date to S3, where the KFP pipeline picks it up by URI.
After training it reads the run record back and publishes the model.

The data set is the wine table bundled with scikit-learn (178 rows, 13
numeric features, 3 classes), exported once to `data/wine.csv` in this
folder: nothing is downloaded. It is small, so the cleaned table passes
between the tasks as XCom; a larger one would go through a staging prefix
in S3 instead.

Plain functions with no Airflow import: the DAG's tasks call them, and tests
can too. boto3 is imported inside the functions, so parsing the DAG stays fast.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import subprocess
from pathlib import Path

from errors import P2Error
from settings import PATTERN_DIR, P2Settings

TARGET = "target"
MIN_COLUMNS = 3  # a target and at least two features


# ## Extract and transform
def extract(source: Path) -> str:
    """The raw CSV text of the source file."""
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise P2Error(f"the extract source {source} does not exist", "point P2_SOURCE_FILE at a CSV file") from exc
    except UnicodeDecodeError as exc:
        raise P2Error(f"the extract source {source} is not UTF-8 text ({exc})", "export it as UTF-8 CSV") from exc
    if not text.strip():
        raise P2Error(
            f"the extract source {source} is empty",
            "restore data/wine.csv from git, or point P2_SOURCE_FILE at a non-empty CSV",
        )
    return text


def transform(raw: str, source: str = "the extract") -> tuple[str, dict]:
    """Check and clean the table: a header with `target`, every value numeric,
    integer class labels; drop exact duplicate rows. Returns the clean CSV
    and a few facts about it."""
    rows = list(csv.reader(io.StringIO(raw)))
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if any(cell.strip() for cell in r)]
    if TARGET not in header or len(header) < MIN_COLUMNS:
        raise P2Error(
            f"{source} is malformed: its header {header[:8]} has no {TARGET!r} column and at least two features",
            "give a CSV whose first line names the feature columns and a 'target' column",
        )
    if not body:
        raise P2Error(f"{source} has a header but no rows", "give a CSV with data rows")
    clean: list[list[float]] = []
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise P2Error(
                f"{source} is malformed: line {number} has {len(row)} fields, the header {len(header)}",
                "fix that line (a stray comma or a missing value)",
            )
        try:
            values = [float(cell) for cell in row]
        except ValueError as exc:
            raise P2Error(
                f"{source} is malformed: line {number} has a non-numeric value ({exc})", "fix that line"
            ) from exc
        if any(math.isnan(v) or math.isinf(v) for v in values):
            raise P2Error(f"{source} is malformed: line {number} has NaN or infinite values", "fix that line")
        label = values[header.index(TARGET)]
        if label != int(label):
            raise P2Error(f"{source}: line {number} has a non-integer class label {label}", "fix that line")
        clean.append(values)
    unique = list(dict.fromkeys(map(tuple, clean)))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    target_at = header.index(TARGET)
    for values in unique:
        writer.writerow([int(v) if i == target_at else f"{v:.6g}" for i, v in enumerate(values)])
    facts = {"rows": len(unique), "duplicates_dropped": len(clean) - len(unique), "columns": len(header)}
    return out.getvalue(), facts


# ## S3
def s3_client(settings: P2Settings):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        region_name="us-east-1",
        config=Config(connect_timeout=settings.connect_timeout, retries={"max_attempts": 2}),
    )


def _s3_call(settings: P2Settings, what: str, call):
    """Run one S3 call; turn the failures a user can fix into P2Errors."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            raise P2Error(
                f"the S3 server at {settings.s3_endpoint_url} rejected access key {settings.s3_access_key_id!r} "
                f"({code}) while trying to {what}",
                "set S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (or P2_S3_...) to the keys the S3 server was "
                "started with; the local stack's are in .env.example",
            ) from exc
        if code in ("NoSuchBucket",):
            raise P2Error(
                f"bucket {settings.bucket!r} does not exist on {settings.s3_endpoint_url}",
                "run `make up` (it creates p2-data), or create the bucket and set P2_BUCKET",
            ) from exc
        raise P2Error(
            f"S3 at {settings.s3_endpoint_url} failed to {what} ({code}: {exc})", "see the S3 server's log"
        ) from exc
    except BotoCoreError as exc:
        raise P2Error(
            f"S3 at {settings.s3_endpoint_url} is unreachable while trying to {what} ({exc})",
            "start the local stack with `make up`, or set S3_ENDPOINT_URL (or P2_S3_ENDPOINT_URL)",
        ) from exc


def dataset_key(ds: str) -> str:
    """One dataset per logical date: re-running a date overwrites its own key."""
    return f"datasets/wine/ds={ds}/wine.csv"


def load(settings: P2Settings, text: str, ds: str, lineage: dict[str, str] | None = None) -> str:
    """Put the dataset; `lineage` (data sha256, git commit, DAG run) goes along
    as the object's metadata, so the object itself says what made it."""
    key = dataset_key(ds)
    client = s3_client(settings)
    metadata = {k.replace("_", "-"): v for k, v in (lineage or {}).items()}
    _s3_call(
        settings,
        f"write s3://{settings.bucket}/{key}",
        lambda: client.put_object(
            Bucket=settings.bucket, Key=key, Body=text.encode(), ContentType="text/csv", Metadata=metadata
        ),
    )
    return f"s3://{settings.bucket}/{key}"


# ## Lineage: the data version and the code version of a run
def data_sha256(text: str) -> str:
    """The data version: the sha256 of the dataset's bytes as loaded to S3."""
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit() -> str:
    """The commit of the code that runs (`-dirty` when this folder has
    uncommitted changes), or 'none (not a git checkout)'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PATTERN_DIR, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=PATTERN_DIR,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "none (not a git checkout)"
    return f"{sha}-dirty" if dirty else sha


def _split(uri: str) -> tuple[str, str]:
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    return bucket, prefix.rstrip("/")


def read_metrics(settings: P2Settings, export_uri: str) -> dict[str, float]:
    """The metrics the pipeline's evaluate step wrote to the run record."""
    bucket, prefix = _split(export_uri)
    client = s3_client(settings)
    body = _s3_call(
        settings,
        f"read {export_uri}/metrics.json",
        lambda: client.get_object(Bucket=bucket, Key=f"{prefix}/metrics.json")["Body"].read(),
    )
    return json.loads(body)


def published_prefix(settings: P2Settings, ds: str) -> str:
    return f"s3://{settings.bucket}/published/ds={ds}"


def publish(settings: P2Settings, export_uri: str, ds: str, decision: dict) -> str:
    """Copy the model and its metrics from the run record to published/ds=<date>/,
    then write decision.json last: a reader who sees it sees a complete model."""
    bucket, prefix = _split(export_uri)
    target = published_prefix(settings, ds)
    _, target_prefix = _split(target)
    client = s3_client(settings)
    for name in ("model.joblib", "metrics.json"):
        _s3_call(
            settings,
            f"copy {export_uri}/{name} to {target}/",
            lambda name=name: client.copy_object(
                Bucket=bucket, Key=f"{target_prefix}/{name}", CopySource={"Bucket": bucket, "Key": f"{prefix}/{name}"}
            ),
        )
    _s3_call(
        settings,
        f"write {target}/decision.json",
        lambda: client.put_object(
            Bucket=bucket, Key=f"{target_prefix}/decision.json", Body=json.dumps(decision, indent=2).encode()
        ),
    )
    return target
