"""Bounded numbers for flow parameters. Prefect turns these annotations into the parameter schema of a
deployment (minimum and maximum), so the UI offers the bounds and a bad value is refused before a run
starts; in-process runs are validated against the same schema (flows/orchestration.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from faceaudit.head.uncertainty import SAMPLE_RANGE

BatchSize = Annotated[int, Field(ge=1, le=1024, description="Images per forward pass.")]
Workers = Annotated[int, Field(ge=0, le=64, description="DataLoader processes decoding ahead.")]
Samples = Annotated[
    int, Field(ge=SAMPLE_RANGE[0], le=SAMPLE_RANGE[1], description="Monte Carlo samples per prediction.")
]
Rate = Annotated[float, Field(ge=0.0, le=1.0)]
ViewCount = Annotated[int, Field(ge=0, le=16, description="Augmented views per training image.")]
Directions = Annotated[
    int, Field(ge=0, le=1024, description="View directions projected out of every vector (0: none).")
]
Partitions = Annotated[int, Field(ge=1, le=256, description="Parallel embedding tasks.")]
