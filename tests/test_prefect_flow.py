"""The `embed` flow under real Prefect orchestration, recorded by a real Prefect server."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceaudit.flows.embed_flow import embed_flow
from tests.conftest import make_labelled_folder


def test_embed_flow_runs_under_prefect_as_named_tasks(
    tiny_vit: Path, tmp_path: Path, prefect_api: str
) -> None:
    folder = make_labelled_folder(tmp_path / "images", per_class=2)
    state = embed_flow(
        str(folder),
        str(tmp_path / "store"),
        backbone=str(tiny_vit),
        batch_size=2,
        workers=0,
        return_state=True,
    )
    assert state.is_completed()
    summary = state.result()
    assert summary.new == 4 and summary.files == 4


def test_every_flow_parameter_is_described_in_the_schema() -> None:
    """What the Prefect UI shows beside each parameter of a deployment or a custom run."""
    from faceaudit.flows.embed_flow import embed_flow
    from faceaudit.flows.evaluate_flow import evaluate_flow
    from faceaudit.flows.nightly_flow import nightly_flow
    from faceaudit.flows.score_flow import score_flow
    from faceaudit.flows.train_flow import train_flow

    for flow in (embed_flow, train_flow, evaluate_flow, score_flow, nightly_flow):
        properties = flow.parameters.model_dump()["properties"]
        undescribed = [name for name, schema in properties.items() if not schema.get("description")]
        assert not undescribed, (flow.name, undescribed)


def test_train_flow_refuses_a_parameter_its_head_does_not_take_before_embedding(
    tiny_vit: Path, tmp_path: Path, prefect_api: str
) -> None:
    """A deployment's parameters bypass the command line's checks: the flow itself must refuse them,
    in one line, before the hour of embedding (`members` is the MC-dropout head's alone)."""
    from faceaudit.flows.train_flow import train_flow

    folder = make_labelled_folder(tmp_path / "images", per_class=2)
    state = train_flow(
        str(folder),
        str(tmp_path / "model"),
        str(tmp_path / "store"),
        head="pyro-vi",
        backbone=str(tiny_vit),
        head_params={"members": 2},
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(ValueError, match="'members' does not apply to pyro-vi; it takes hidden, prior_scale"):
        state.result()
    assert not (tmp_path / "store").exists() and not (tmp_path / "model").exists()
