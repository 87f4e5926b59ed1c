"""The reference design's head, done with care: an MLP whose dropout stays on at prediction time.

Shape: input -> 64 -> 64 -> 2, ReLU, dropout (0.3) on the outputs of the first two layers. Each Monte
Carlo sample is one thinned network (one pair of dropout masks). The reference design's first layer had
128 units; on the default 6,912-float vector that layer alone would be 3.5 MB of the model, and 64 units
judged as many validation faces (86.5% against 86.1% on the eleven sources, one seed each).

Since a mask on a layer's output equals zeroing rows of the next weight matrix, the first layer runs once
and each sample's masks are folded into the small later matrices: 200 samples cost two batched matmuls,
not 200 forward passes.

`members` > 1 trains that many such networks, seeds `seed`, `seed + 1`, ..., and judges them as one:
each member draws an equal, contiguous share of the Monte Carlo samples, so the spread of the samples
holds the members' disagreement as well as dropout's. The head's seed moves every figure of the
built-in recipe as much as most recipes do (docs/features.md, "Halved faces"); a mixture averages that
draw out, at `members` times the training time and the first layer's size. With one member the
weights are stored and sampled exactly as before.
"""

from __future__ import annotations

import numpy as np

from faceaudit.head.base import Head
from faceaudit.head.training import early_stopping_loop, single_thread


class MCDropoutHead(Head):
    kind = "mc-dropout"

    def __init__(
        self,
        hidden: tuple[int, int] = (64, 64),
        dropout: float = 0.3,
        lr: float = 3e-4,
        weight_decay: float = 0.1,
        batch_size: int = 64,
        max_epochs: int = 300,
        patience: int = 40,
        seed: int = 0,
        members: int = 1,
    ) -> None:
        if int(members) != members or members < 1:
            raise ValueError(f"members must be a whole number of at least 1, not {members!r}")
        self.hidden = tuple(hidden)
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.seed = seed
        self.members = int(members)

    def _network(self, n_in: int):
        import torch.nn as nn

        h1, h2 = self.hidden
        return nn.Sequential(
            nn.Linear(n_in, h1),
            nn.ReLU(),
            nn.Dropout(self.dropout),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Dropout(self.dropout),
            nn.Linear(h2, 2),
        )

    def _fit(self, Z, y, val) -> None:
        if self.members > 1:
            self._fit_members(Z, y, val)
            return
        import torch

        with single_thread():
            torch.manual_seed(self.seed)
            net = self._network(Z.shape[1])
            optimiser = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            loss_fn = torch.nn.CrossEntropyLoss()

            def train_step(xb, yb) -> float:
                net.train()
                optimiser.zero_grad()
                loss = loss_fn(net(xb), yb)
                loss.backward()
                optimiser.step()
                return float(loss.detach())

            def val_loss(xv, yv) -> float:
                net.eval()
                with torch.no_grad():
                    return float(loss_fn(net(xv), yv))

            def snapshot():
                return {k: v.detach().clone() for k, v in net.state_dict().items()}

            best = early_stopping_loop(
                self, Z, y, val, train_step=train_step, val_loss=val_loss, snapshot=snapshot
            )
            net.load_state_dict(best)
        layers = [m for m in net if isinstance(m, torch.nn.Linear)]
        self.weights_ = {
            f"{name}": layer.__getattr__(part).detach().numpy().copy()
            for index, layer in enumerate(layers, start=1)
            for part, name in (("weight", f"w{index}"), ("bias", f"b{index}"))
        }

    def _fit_members(self, Z, y, val) -> None:
        """Train each member as a one-member head of the next seed; stack their weights (member first).
        The loss curves kept (`history_`, the card's training plot) are the first member's."""
        fitted = []
        for offset in range(self.members):
            member = MCDropoutHead(**{**self.get_params(), "seed": self.seed + offset, "members": 1})
            member.history_ = {"train_loss": [], "val_loss": []}
            member._fit(Z, y, val)
            if offset == 0:
                self.history_ = member.history_
            fitted.append(member.weights_)
        self.weights_ = {name: np.stack([w[name] for w in fitted]) for name in fitted[0]}

    def _stacked_weights(self):
        """The weights as torch tensors with a leading member axis (a single network gets one); weights
        that are not `members` networks' (a model card edited) are refused."""
        import torch

        stacked = {k: v if self.members > 1 else v[None] for k, v in self.weights_.items()}
        for name, value in stacked.items():
            if len(value) != self.members or value.ndim != (2 if name.startswith("b") else 3):
                shape = tuple(self.weights_[name].shape)
                raise ValueError(f"weight {name} of shape {shape} does not hold {self.members} network(s)")
        return {k: torch.from_numpy(v) for k, v in stacked.items()}

    def _draw_networks(self, n_samples: int, seed: int):
        import torch

        generator = torch.Generator().manual_seed(seed)
        keep = 1.0 - self.dropout
        h1, h2 = self.hidden
        m1 = (torch.rand(n_samples, h1, generator=generator) < keep).float() / keep
        m2 = (torch.rand(n_samples, h2, generator=generator) < keep).float() / keep
        w = self._stacked_weights()
        # Sample s belongs to member s * members // n_samples: equal, contiguous shares.
        member = torch.arange(n_samples) * self.members // n_samples
        # Fold each sample's masks into its member's next-layer weights: (S, in, out).
        w2 = m1[:, :, None] * w["w2"][member].transpose(1, 2)
        w3 = m2[:, :, None] * w["w3"][member].transpose(1, 2)
        return w, member, w2, w3

    def _first_layer(self, Z, w):
        """(members, N, h1): the first layer once per member, for all of its samples. One network takes
        a plain matmul, so a single network's figures stay exactly what they were."""
        import torch

        if self.members == 1:
            return torch.relu(Z @ w["w1"][0].T + w["b1"][0])[None]
        return torch.relu(torch.einsum("nd,mhd->mnh", Z, w["w1"]) + w["b1"][:, None])

    def _sample_logits(self, Z, networks):
        import torch

        w, member, w2, w3 = networks
        h1 = self._first_layer(Z, w)
        if self.members == 1:  # broadcast over the samples, not copied per sample
            h2 = torch.relu(torch.matmul(h1[0], w2) + w["b2"][0])  # (S, N, h2)
            return torch.matmul(h2, w3) + w["b3"][0]  # (S, N, 2)
        h2 = torch.relu(torch.matmul(h1[member], w2) + w["b2"][member][:, None])
        return torch.matmul(h2, w3) + w["b3"][member][:, None]

    def _mean_logits(self, Z):
        """Dropout off, weights as trained: the usual deterministic approximation of the MC mean (the
        members' logits averaged)."""
        import torch

        w = self._stacked_weights()
        h1 = self._first_layer(Z, w)
        if self.members == 1:  # plain matmuls, as `_first_layer`: a single network's figures unchanged
            h2 = torch.relu(h1[0] @ w["w2"][0].T + w["b2"][0])
            return h2 @ w["w3"][0].T + w["b3"][0]
        h2 = torch.relu(torch.einsum("mnh,mkh->mnk", h1, w["w2"]) + w["b2"][:, None])
        return (torch.einsum("mnk,mck->mnc", h2, w["w3"]) + w["b3"][:, None]).mean(0)
