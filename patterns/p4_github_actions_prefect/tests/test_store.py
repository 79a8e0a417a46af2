"""A model is loaded only if its bytes are the ones its card recorded (no S3 needed)."""

from __future__ import annotations

import hashlib

import pytest

from errors import P4Error
from store import verified

BODY = b"pretend these are joblib bytes"
CARD = {"model_url": "s3://p4-models/models/abc/run/model.joblib", "model_sha256": hashlib.sha256(BODY).hexdigest()}


def test_the_recorded_bytes_pass() -> None:
    assert verified(BODY, CARD) == BODY


def test_changed_bytes_are_refused_before_loading() -> None:
    with pytest.raises(P4Error, match="is not the one its card records") as refused:
        verified(BODY + b"!", CARD)
    assert "nothing was loaded" in refused.value.fix


def test_a_card_without_a_hash_is_refused() -> None:
    with pytest.raises(P4Error, match="records no model_sha256"):
        verified(BODY, {"model_url": CARD["model_url"]})
