"""The run stage's check of a model card (verify.py), with no server: a card
passes only when it names the release, commit and flow run the stage
triggered, and for an image release, that the run ran in that image."""

from __future__ import annotations

from conftest import SHA
from verify import card_problems, run_key

RUN = "9b1e1d22-0000-4000-8000-000000000001"
SOURCE = {"release": SHA, "git_sha": SHA, "mode": "source", "image_id": ""}
IMAGE = {"release": SHA, "git_sha": SHA, "mode": "image", "image_id": "sha256:fbf1"}


def card(**fields) -> dict:
    return {"release": SHA, "git_sha": SHA, "flow_run_id": RUN, "image_id": None, "image_release": None} | fields


def test_a_card_of_this_release_and_run_checks_out():
    assert card_problems(card(), SOURCE, RUN) == []
    assert card_problems(card(image_id="sha256:fbf1", image_release=SHA), IMAGE, RUN) == []


def test_a_card_of_another_release_run_or_commit_does_not():
    other = "f" * 40
    assert card_problems(card(release=other), SOURCE, RUN) == [f"card field release={other!r}, expected {SHA!r}"]
    assert card_problems(card(), SOURCE, "another-run") == [f"card field flow_run_id={RUN!r}, expected 'another-run'"]
    assert card_problems(card(git_sha=None), SOURCE, RUN) == [f"card field git_sha=None, expected {SHA!r}"]


def test_an_image_release_must_have_run_in_its_image():
    # Ran from a source snapshot, or in an image that carries another release: both fail.
    assert card_problems(card(), IMAGE, RUN) == [
        "card field image_id=None, expected 'sha256:fbf1'",
        f"card field image_release=None, expected {SHA!r}",
    ]
    assert card_problems(card(image_id="sha256:fbf1", image_release="f" * 40), IMAGE, RUN) == [
        f"card field image_release={'f' * 40!r}, expected {SHA!r}"
    ]
    # A source release's card names no image.
    named = card(image_id="sha256:fbf1")
    assert card_problems(named, SOURCE, RUN) == ["card field image_id='sha256:fbf1', expected None"]


def test_a_run_is_keyed_by_deployment_release_and_what_ships_it():
    source = {"release": "abc", "image_id": ""}
    image = {"release": "abc", "image_id": "sha256:e5c23f084489cbb394d86eb086f5af69d5edbac5c3c6bbbd213cff1d6aa3cd38"}
    rebuilt = image | {"image_id": "sha256:0123456789ab" + "0" * 52}
    assert run_key("p4-retrain/p4-retrain", source, 1) == "p4-retrain/p4-retrain:abc:source:1"
    assert run_key("p4-retrain/p4-retrain", image, 2) == "p4-retrain/p4-retrain:abc:image-e5c23f084489:2"
    keys = {run_key("p4-retrain/p4-retrain", b, 1) for b in (source, image, rebuilt)}
    assert len(keys) == 3, "a snapshot, an image and a rebuilt image of one commit are three runs"
