"""Why a verdict: occlusion sensitivity of P(AI-generated) and its rendering over the image.

An explanation is a function of a forward function (as in Captum's `Occlusion`): it is handed
`forward(pixels) -> p_ai` and knows neither the backbone nor the head.
"""

from explain.occlusion import Occlusion, OcclusionResult, occlusion_windows
from explain.render import render_map

__all__ = ["Occlusion", "OcclusionResult", "occlusion_windows", "render_map"]
