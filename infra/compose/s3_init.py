"""One-shot bucket initialisation of the compose tier's S3 (SeaweedFS): create
every bucket in BUCKETS that does not exist yet, with the stack's key, then
exit 0. Idempotent: `docker compose up` runs it on every start.

Reads S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and BUCKETS
(comma-separated) from its environment (docker-compose.yml).
"""

import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


def main() -> int:
    endpoint = os.environ["S3_ENDPOINT_URL"]
    buckets = [b.strip() for b in os.environ["BUCKETS"].split(",") if b.strip()]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    deadline = time.monotonic() + 120
    pending = list(buckets)
    last_error = ""
    while pending and time.monotonic() < deadline:
        bucket = pending[0]
        try:
            s3.head_bucket(Bucket=bucket)
            print(f"bucket {bucket}: exists")
            pending.pop(0)
            continue
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                print(
                    f"S3 at {endpoint} refused the stack's key ({code}): S3_ACCESS_KEY_ID / "
                    "S3_SECRET_ACCESS_KEY differ from the identities the s3 service started with; "
                    "run `docker compose up -d --force-recreate s3`",
                    file=sys.stderr,
                )
                return 1
            if code not in ("404", "NoSuchBucket", "NotFound"):
                last_error = f"{code}: {exc}"
                time.sleep(1)
                continue
        except BotoCoreError as exc:  # not answering yet
            last_error = str(exc)
            time.sleep(1)
            continue
        try:
            s3.create_bucket(Bucket=bucket)
            print(f"bucket {bucket}: created")
            pending.pop(0)
        except ClientError as exc:  # the filer may still be settling
            last_error = str(exc)
            time.sleep(1)
    if pending:
        print(f"could not create {pending} at {endpoint} within 120 s: {last_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
