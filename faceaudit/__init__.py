"""faceaudit: tell real face photographs from AI-generated faces, in bulk, with calibrated doubt.

One import package, `faceaudit`, whose subpackages are the five folders at the top of the repository:
`faceaudit.data` (files, labels, safe reading), `faceaudit.embed` (backbone, preprocessing, feature
store), `faceaudit.head` (Bayesian heads, calibration, verdicts), `faceaudit.explain` (maps) and
`faceaudit.flows` (the Prefect flows and the command line). pyproject.toml maps them there, so that an
environment shared with other projects (a Prefect worker's) never sees a top-level `flows` or `data`
of ours.
"""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("faceaudit")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

# From a checkout that was not installed (PYTHONPATH=the checkout), find the five folders beside this
# one, as the installed mapping does.
_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "flows" / "__init__.py").is_file():
    __path__.append(str(_checkout))
