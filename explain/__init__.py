"""Why a verdict: occlusion sensitivity and gradient x input of P(AI-generated), rendered over the image.

An explanation is a function of a forward function (as in Captum's `Occlusion(forward).attribute(...)`):
it is handed `forward(pixels) -> p_ai` (and, for gradients, a differentiable forward that also shows its
patch tokens) and knows neither the backbone nor the head.
"""

from faceaudit.explain.baselines import baseline_image
from faceaudit.explain.gradient import GradientXInput
from faceaudit.explain.occlusion import Attribution, Occlusion, occlusion_windows
from faceaudit.explain.render import render_map

__all__ = ["Attribution", "GradientXInput", "Occlusion", "baseline_image", "occlusion_windows", "render_map"]
