"""The model store: models and predictions on S3, keyed by release and flow run.

    s3://<bucket>/models/<release>/<flow-run-id>/model.joblib   the fitted model
    s3://<bucket>/models/<release>/<flow-run-id>/model.json     what made it (card)
    s3://<bucket>/models/latest.json                            the card of the model in service
    s3://<bucket>/predictions/<release>/<flow-run-id>.csv       a batch-score output

A release is a git commit (see release.py), so every model traces back to the
commit, the image or source snapshot, the data hash and the Prefect flow run
that produced it. `latest.json` is written last, after the model and its
card, so a failed run never changes the model in service. The card records the
model's sha256, and a model whose bytes differ is refused before it is
unpickled (unpickling runs code: a model swapped in the bucket must not be).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

import joblib
from botocore.exceptions import BotoCoreError, ClientError

from errors import P4Error
from settings import P4Settings

LATEST = "models/latest.json"


def model_prefix(release: str, flow_run_id: str) -> str:
    return f"models/{release}/{flow_run_id}"


def verified(body: bytes, card: dict[str, Any]) -> bytes:
    """The model's bytes, if they are the ones its card recorded at training."""
    expected, actual = card.get("model_sha256"), hashlib.sha256(body).hexdigest()
    if not expected:
        raise P4Error(
            f"the card of {card['model_url']} records no model_sha256 (a model from before models were hashed)",
            "nothing was loaded; retrain with the p4-retrain deployment (`make p4-run`)",
        )
    if actual != expected:
        raise P4Error(
            f"the model at {card['model_url']} is not the one its card records: "
            f"sha256 {actual[:16]}... != {expected[:16]}... (changed after training)",
            "nothing was loaded; retrain with the p4-retrain deployment (`make p4-run`), "
            "or restore the model the card names",
        )
    return body


@dataclass
class ModelStore:
    settings: P4Settings

    def __post_init__(self) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = self.settings.model_bucket
        self._s3 = boto3.client(
            "s3",
            endpoint_url=self.settings.s3_endpoint_url,
            aws_access_key_id=self.settings.s3_access_key_id,
            aws_secret_access_key=self.settings.s3_secret_access_key,
            region_name="us-east-1",
            config=Config(
                connect_timeout=self.settings.connect_timeout,
                read_timeout=30,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        )

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _key(self, url: str) -> str:
        return url.removeprefix(f"s3://{self.bucket}/")

    def check(self) -> None:
        """Fail early, naming the endpoint and bucket, when the store is unusable."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise P4Error(
                    f"bucket {self.bucket!r} does not exist at {self.settings.s3_endpoint_url}",
                    "create it (`make up` creates p4-models) or set P4_MODEL_BUCKET to an existing bucket",
                ) from None
            raise P4Error(
                f"S3 at {self.settings.s3_endpoint_url} refused bucket {self.bucket!r} ({code})",
                "check P4_S3_ACCESS_KEY_ID / P4_S3_SECRET_ACCESS_KEY",
            ) from None
        except BotoCoreError as exc:
            raise P4Error(
                f"S3 is unreachable at {self.settings.s3_endpoint_url} ({exc})",
                "start it (`make up`) or set P4_S3_ENDPOINT_URL",
            ) from None

    # -- writing ---------------------------------------------------------------------
    def save_model(self, model: Any, card: dict[str, Any]) -> dict[str, Any]:
        """Model, then its card, then the `latest` pointer (the commit point)."""
        prefix = model_prefix(card["release"], card["flow_run_id"])
        buffer = io.BytesIO()
        joblib.dump(model, buffer)
        card = card | {
            "model_url": self.url(f"{prefix}/model.joblib"),
            "card_url": self.url(f"{prefix}/model.json"),
            "model_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
        }
        self._s3.put_object(Bucket=self.bucket, Key=f"{prefix}/model.joblib", Body=buffer.getvalue())
        self._put_json(f"{prefix}/model.json", card)
        self._put_json(LATEST, card)
        return card

    def predictions_url(self, release: str, flow_run_id: str) -> str:
        return self.url(f"predictions/{release}/{flow_run_id}.csv")

    def save_predictions(self, release: str, flow_run_id: str, csv_text: str) -> str:
        url = self.predictions_url(release, flow_run_id)
        self._s3.put_object(Bucket=self.bucket, Key=self._key(url), Body=csv_text.encode(), ContentType="text/csv")
        return url

    def _put_json(self, key: str, value: dict[str, Any]) -> None:
        body = json.dumps(value, indent=2, sort_keys=True).encode()
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")

    # -- reading ---------------------------------------------------------------------
    def card(self, release: str | None = None, flow_run_id: str | None = None) -> dict[str, Any]:
        """A model's card: the one in service, or the one a flow run wrote."""
        key = LATEST if release is None else f"{model_prefix(release, flow_run_id or '')}/model.json"
        try:
            return json.loads(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise P4Error(
                    f"no model card at {self.url(key)}",
                    "run the p4-retrain deployment first (`make p4-run`)",
                ) from None
            raise

    def load_model(self, card: dict[str, Any]) -> Any:
        body = self._s3.get_object(Bucket=self.bucket, Key=self._key(card["model_url"]))["Body"].read()
        return joblib.load(io.BytesIO(verified(body, card)))

    def exists(self, url: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(url))
            return True
        except ClientError:
            return False

    def read_text(self, url: str) -> str:
        return self._s3.get_object(Bucket=self.bucket, Key=self._key(url))["Body"].read().decode()
