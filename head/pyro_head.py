"""A Bayesian MLP in Pyro: priors on the weights, a mean-field Normal posterior fitted by SVI.

    h1     = relu(x W1 + b1)                      W1, b1: a learned feature map (point estimate)
    W2, b2 ~ Normal(0, s / sqrt(128))             W3, b3 ~ Normal(0, s / sqrt(64))
    h2     = relu(h1 W2 + b2)
    y      ~ Categorical(logits = h2 W3 + b3)

The first layer (6,912 x 128 weights on the default vector) is fitted as a point estimate with weight
decay: sampling it would cost 200 x 6,912 x 128 multiply-adds per image, too slow for the 2 s budget on
10,000 vectors, and the doubt that matters lives in the decision layers. The likelihood is scaled by
N / batch size for minibatches (`pyro.plate(..., subsample=...)`). `Predictive` draws the weight
samples in one vectorised call; the forward for all samples is then two batched matmuls.
"""

from __future__ import annotations

import numpy as np

from faceaudit.head.base import Head
from faceaudit.head.training import early_stopping_loop, single_thread

_SITES = ("w2", "b2", "w3", "b3")


def _bayesian_mlp(n_in: int, hidden: tuple[int, int], prior_scale: float):
    import pyro.distributions as dist
    import torch
    from pyro.nn import PyroModule, PyroSample

    h1, h2 = hidden

    class BayesianMLP(PyroModule):
        def __init__(self) -> None:
            super().__init__()
            self.features = PyroModule[torch.nn.Linear](n_in, h1)
            self.w2 = PyroSample(dist.Normal(0.0, prior_scale / h1**0.5).expand([h1, h2]).to_event(2))
            self.b2 = PyroSample(dist.Normal(0.0, prior_scale).expand([h2]).to_event(1))
            self.w3 = PyroSample(dist.Normal(0.0, prior_scale / h2**0.5).expand([h2, 2]).to_event(2))
            self.b3 = PyroSample(dist.Normal(0.0, prior_scale).expand([2]).to_event(1))

        def forward(self, x, y=None, n_total: int | None = None):
            import pyro

            hidden1 = torch.relu(self.features(x))
            logits = logits_from(hidden1, self.w2, self.b2, self.w3, self.b3)
            rows = torch.arange(len(x))
            with pyro.plate("data", size=n_total or len(x), subsample=rows):
                pyro.sample("y", dist.Categorical(logits=logits), obs=y)
            return logits

    return BayesianMLP()


def logits_from(hidden1, w2, b2, w3, b3):
    """Works for one network (w2: (h1, h2)) or a stack of sampled ones (w2: (S, h1, h2))."""
    import torch

    if w2.dim() == 3:
        b2, b3 = b2[:, None, :], b3[:, None, :]
    hidden2 = torch.relu(torch.matmul(hidden1, w2) + b2)
    return torch.matmul(hidden2, w3) + b3


class PyroHead(Head):
    kind = "pyro-vi"

    def __init__(
        self,
        hidden: tuple[int, int] = (128, 64),
        prior_scale: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        batch_size: int = 128,
        max_epochs: int = 300,
        patience: int = 40,
        val_samples: int = 16,
        seed: int = 0,
    ) -> None:
        self.hidden = tuple(hidden)
        self.prior_scale = prior_scale
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.val_samples = val_samples
        self.seed = seed

    def _fit(self, Z, y, val) -> None:
        import pyro
        import torch
        from pyro.infer import SVI, Trace_ELBO
        from pyro.infer.autoguide import AutoNormal
        from pyro.optim import ClippedAdam

        n_total = len(y) if val is not None else len(y) - max(1, int(len(y) * 0.1))
        with single_thread(), pyro.get_param_store().scope(), torch.random.fork_rng():
            pyro.set_rng_seed(self.seed)
            model = _bayesian_mlp(Z.shape[1], self.hidden, self.prior_scale)
            guide = AutoNormal(model, init_scale=0.01)

            def optimiser_args(module_name: str, param_name: str) -> dict:
                decay = self.weight_decay if param_name.startswith("features") else 0.0
                return {"lr": self.lr, "weight_decay": decay, "clip_norm": 10.0}

            svi = SVI(model, guide, ClippedAdam(optimiser_args), Trace_ELBO())
            guide(torch.from_numpy(Z[:2]), torch.from_numpy(y[:2]), n_total)  # creates the guide's params

            def train_step(xb, yb) -> float:
                return svi.step(xb, yb, n_total) / n_total

            def val_loss(xv, yv) -> float:
                self._capture(model, guide)
                with torch.no_grad():
                    logits = torch.from_numpy(self.sample_logits_standardized(xv.numpy(), self.val_samples))
                probs = torch.softmax(logits, -1).mean(0)
                return float(-torch.log(probs[torch.arange(len(yv)), yv] + 1e-12).mean())

            def snapshot():
                self._capture(model, guide)
                return {k: v.copy() for k, v in self.weights_.items()}

            best = early_stopping_loop(
                self, Z, y, val, train_step=train_step, val_loss=val_loss, snapshot=snapshot
            )
        self.weights_ = best

    def _capture(self, model, guide) -> None:
        """Copy the fitted feature layer and the posterior's locations and scales out of Pyro."""
        weights = {
            "w1": model.features.weight.detach().numpy().copy(),
            "b1": model.features.bias.detach().numpy().copy(),
        }
        for site in _SITES:
            loc, scale = getattr(guide.locs, site), getattr(guide.scales, site)
            weights[f"{site}_loc"] = loc.detach().numpy().copy()
            weights[f"{site}_scale"] = scale.detach().numpy().copy()
        self.weights_ = weights

    def posterior_guide(self):
        """The fitted posterior as a guide of its own, usable without Pyro's global param store."""
        import pyro
        import pyro.distributions as dist
        import torch

        w = {k: torch.from_numpy(v) for k, v in self.weights_.items()}

        def guide(*args, **kwargs):
            for site in _SITES:
                loc, scale = w[f"{site}_loc"], w[f"{site}_scale"]
                pyro.sample(site, dist.Normal(loc, scale).to_event(loc.dim()))

        return guide

    def _draw_networks(self, n_samples: int, seed: int):
        import pyro
        import torch
        from pyro.infer import Predictive

        h1, h2 = self.hidden
        model = _bayesian_mlp(self.n_features_in_, self.hidden, self.prior_scale)
        with pyro.get_param_store().scope(), torch.random.fork_rng():
            pyro.set_rng_seed(seed)
            predictive = Predictive(
                model, guide=self.posterior_guide(), num_samples=n_samples, return_sites=_SITES, parallel=True
            )
            draws = predictive(torch.zeros(1, self.n_features_in_))
        shapes = {"w2": (h1, h2), "b2": (h2,), "w3": (h2, 2), "b3": (2,)}
        sampled = {site: draws[site].reshape(n_samples, *shapes[site]) for site in _SITES}
        return torch.from_numpy(self.weights_["w1"]), torch.from_numpy(self.weights_["b1"]), sampled

    def _sample_logits(self, Z, networks):
        import torch

        w1, b1, s = networks
        hidden1 = torch.relu(Z @ w1.T + b1)
        return logits_from(hidden1, s["w2"], s["b2"], s["w3"], s["b3"])

    def _mean_logits(self, Z):
        """The network at the posterior means."""
        import torch

        w = {k: torch.from_numpy(v) for k, v in self.weights_.items()}
        hidden1 = torch.relu(Z @ w["w1"].T + w["b1"])
        return logits_from(hidden1, w["w2_loc"], w["b2_loc"], w["w3_loc"], w["b3_loc"])

    def sample_logits_standardized(self, Z: np.ndarray, n_samples: int, seed: int = 0) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._sample_logits(torch.from_numpy(Z), self._draw_networks(n_samples, seed)).numpy()
