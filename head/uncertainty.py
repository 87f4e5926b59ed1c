"""From Monte Carlo samples of P(AI-generated) to one probability and two kinds of doubt.

Entropy of the mean prediction is total doubt; mutual information (entropy of the mean minus mean
entropy of the samples) is the part that comes from the model not knowing: the samples disagree.
Entropies are in bits, so both lie in [0, 1] for two classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Monte Carlo samples per prediction (dropout masks or weight draws) unless a model or caller says otherwise.
DEFAULT_SAMPLES = 200
SAMPLE_RANGE = (2, 10000)  # Monte Carlo samples a run may ask for: below 2 no spread, above it no gain

_EPS = 1e-12


@dataclass
class Prediction:
    """Per row: mean P(AI), its spread across samples, predictive entropy and mutual information."""

    p_ai: np.ndarray
    p_ai_std: np.ndarray
    entropy: np.ndarray
    mutual_info: np.ndarray

    def __len__(self) -> int:
        return len(self.p_ai)

    def take(self, index) -> Prediction:
        return Prediction(
            self.p_ai[index], self.p_ai_std[index], self.entropy[index], self.mutual_info[index]
        )


def binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def summarize(samples: np.ndarray) -> Prediction:
    """`samples` is (n_samples, n_rows) of P(AI); returns the per-row summary."""
    samples = np.asarray(samples, dtype=np.float64)
    mean = samples.mean(axis=0)
    entropy = binary_entropy(mean)
    expected_entropy = binary_entropy(samples).mean(axis=0)
    return Prediction(
        p_ai=mean,
        p_ai_std=samples.std(axis=0),
        entropy=entropy,
        mutual_info=np.maximum(entropy - expected_entropy, 0.0),
    )
