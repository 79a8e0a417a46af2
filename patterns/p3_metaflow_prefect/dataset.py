"""The dataset on S3: one content-addressed object per dataset version, in the
Metaflow store's bucket. A Metaflow run re-checks the sha256 of what it reads."""

from __future__ import annotations

import hashlib

from errors import P3Error
from settings import P3Settings


def publish_dataset(s: P3Settings) -> tuple[str, str]:
    """Upload the dataset under its sha256 (once), return (s3 url, sha256)."""
    from botocore.exceptions import ClientError

    try:
        raw = s.data_file.read_bytes()
    except OSError as exc:
        raise P3Error(
            f"cannot read the dataset {s.data_file} ({exc.strerror})", "set P3_DATA_FILE to a CSV file"
        ) from None
    sha = hashlib.sha256(raw).hexdigest()
    key = dataset_key(s, sha)
    client = s3_client(s)
    try:
        client.head_object(Bucket=s.metaflow_bucket, Key=key)
    except ClientError:
        client.put_object(Bucket=s.metaflow_bucket, Key=key, Body=raw)
    return f"s3://{s.metaflow_bucket}/{key}", sha


def dataset_key(s: P3Settings, sha: str) -> str:
    """`<prefix of P3_METAFLOW_S3_ROOT>/datasets/<file stem>-<sha256>.csv`."""
    prefix = s.metaflow_s3_root.removeprefix("s3://").partition("/")[2].strip("/")
    return "/".join(part for part in (prefix, "datasets", f"{s.data_file.stem}-{sha}.csv") if part)


def s3_client(s: P3Settings):
    # boto3 is imported here, not at the top: a worker's flow run loads this
    # module and never needs it (Metaflow has its own client).
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s.s3_endpoint_url,
        aws_access_key_id=s.s3_access_key_id,
        aws_secret_access_key=s.s3_secret_access_key,
        region_name="us-east-1",
        config=Config(
            connect_timeout=s.connect_timeout, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"}
        ),
    )
