"""An embedding spec: backbone + preprocessing + pooling. Its fingerprint keys the feature store."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from faceaudit.embed.backbone import BackboneInfo, describe_backbone
from faceaudit.embed.default_backbone import DEFAULT_BACKBONE
from faceaudit.embed.pooling import Pooling
from faceaudit.embed.preprocess import Preprocess

# The pooling was chosen by bench/embed.py's probe, its `+zoom` by bench/features.py's on eleven sources;
# `scale` by how sources left out and rescaled copies are judged, `scale-face` (its square on the face) by
# the folds and because a tall portrait's centre square can be its torso (docs/features.md).
DEFAULT_PREPROCESS = "scale-face"
DEFAULT_POOLING = "cls+mean+std+zoom"


@dataclass(frozen=True)
class EmbeddingSpec:
    """Everything that decides an image's vector. Two specs with one fingerprint give the same vectors."""

    backbone: BackboneInfo
    preprocess: Preprocess
    pooling: Pooling

    @property
    def dim(self) -> int:
        return self.pooling.dim(self.backbone.hidden_size)

    def describe(self) -> dict:
        """What decides the vectors: the fingerprint is the hash of exactly this."""
        backbone = self.backbone.describe()
        backbone.pop("name")  # the same weights under another name give the same vectors
        return {
            "backbone": backbone,
            "preprocess": self.preprocess.describe(),
            "pooling": self.pooling.describe(),
        }

    @property
    def fingerprint(self) -> str:
        canonical = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def provenance(self) -> dict:
        """Attributes written beside every stored vector."""
        return {
            "fingerprint": self.fingerprint,
            "backbone": self.backbone.name,
            "weights_sha256": self.backbone.weights_sha256,
            "preprocess": json.dumps(self.preprocess.describe(), sort_keys=True),
            "pooling": json.dumps(self.pooling.describe(), sort_keys=True),
            "dim": self.dim,
        }


def make_spec(
    backbone: str = DEFAULT_BACKBONE,
    preprocess: str = DEFAULT_PREPROCESS,
    pooling: str = DEFAULT_POOLING,
    layers: tuple[int, ...] = (),
) -> EmbeddingSpec:
    """Build a spec from the command line's words; raises ValueError or BackboneError with a reason."""
    info = describe_backbone(backbone)
    return EmbeddingSpec(
        backbone=info,
        preprocess=Preprocess(mode=preprocess, size=info.input_size),
        pooling=Pooling(pooling, layers).resolved(info.depth),
    )
