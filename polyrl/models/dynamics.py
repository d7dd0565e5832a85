"""A probabilistic ensemble of dynamics models, as one batched module (Chua et al. 2018; Janner et al. 2019).

Each of ``E`` members maps ``(s, a)`` to a diagonal Gaussian over
``(s' - s, r)`` plus a termination logit. Members are trained on bootstrap
resamples of the data with the Gaussian negative log-likelihood, log-variances
softly bounded by learned limits (PETS, appendix A.1); a held-out split stops
training when no member improves by 1% for ``patience`` epochs, and the
``n_elites`` members with the lowest held-out error are used for prediction.
Inputs are standardised with the training data's statistics.

This is the shared model of model-based OPE, MBPO/MOPO and Uni-O4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyrl.nets.mlp import EnsembleMLP


@dataclass(frozen=True)
class DynamicsConfig:
    """Hyperparameters of the ensemble (MBPO's defaults, smaller hidden layers)."""

    n_members: int = 7
    n_elites: int = 5
    hidden: tuple[int, ...] = (200, 200, 200, 200)
    activation: str = "silu"
    learning_rate: float = 1e-3
    weight_decay: float = 5e-5
    batch_size: int = 256
    holdout: float = 0.1
    max_holdout: int = 5000
    patience: int = 5
    max_epochs: int = 200


class DynamicsEnsemble(nn.Module):
    """``E`` Gaussian dynamics models with stacked weights; see the module docstring."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: DynamicsConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or DynamicsConfig()
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        out = obs_dim + 1  # delta obs, reward
        self.net = EnsembleMLP(cfg.n_members, obs_dim + act_dim, 2 * out + 1, cfg.hidden, cfg.activation)
        self.max_logvar = nn.Parameter(torch.full((out,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((out,), -10.0))
        self.register_buffer("in_mean", torch.zeros(obs_dim + act_dim))
        self.register_buffer("in_std", torch.ones(obs_dim + act_dim))
        self.register_buffer("elites", torch.arange(cfg.n_elites))

    def forward(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(mean [E, B, O+1], logvar [E, B, O+1], termination logit [E, B])`` for inputs ``[B, .]`` or ``[E, B, .]``."""
        x = (torch.cat([obs, action], dim=-1) - self.in_mean) / self.in_std
        out = self.net(x)
        n = self.obs_dim + 1
        mean, logvar, term = out[..., :n], out[..., n:2 * n], out[..., -1]
        logvar = self.max_logvar - F.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar, term

    def loss(self, obs: Tensor, action: Tensor, target: Tensor, terminated: Tensor) -> Tensor:
        """Summed over members: Gaussian NLL of ``(s' - s, r)`` + termination BCE + log-variance bound penalty."""
        mean, logvar, term = self(obs, action)
        nll = (((mean - target) ** 2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2))
        bce = F.binary_cross_entropy_with_logits(term, terminated.expand_as(term), reduction="none").mean(1)
        bound = 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        return nll.sum() + bce.sum() + bound

    @torch.no_grad()
    def holdout_error(self, obs: Tensor, action: Tensor, target: Tensor) -> Tensor:
        """Per-member mean squared error of the predicted mean, ``[E]``."""
        mean, _, _ = self(obs, action)
        return ((mean - target) ** 2).mean(dim=(1, 2))

    @torch.no_grad()
    def step(self, obs: Tensor, action: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Sample ``(next_obs, reward, terminated)`` for ``[B]`` inputs, each row from a random elite."""
        mean, logvar, term = self(obs, action)
        b = obs.shape[0]
        pick = self.elites[torch.randint(len(self.elites), (b,), generator=generator, device=obs.device)]
        rows = torch.arange(b, device=obs.device)
        mu, std = mean[pick, rows], (0.5 * logvar[pick, rows]).exp()
        noise = torch.randn(mu.shape, generator=generator, device=obs.device)
        sample = mu + std * noise
        return obs + sample[:, :-1], sample[:, -1], torch.sigmoid(term[pick, rows]) > 0.5


def fit_dynamics(obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor, terminated: Tensor, *,
                 cfg: DynamicsConfig | None = None, seed: int = 0) -> tuple[DynamicsEnsemble, dict[str, float]]:
    """Train a :class:`DynamicsEnsemble` on transitions ``[N, .]`` with holdout early stopping.

    Returns the model and a summary (epochs, holdout MSE of the elites).
    """
    cfg = cfg or DynamicsConfig()
    gen = torch.Generator().manual_seed(seed)
    n = obs.shape[0]
    device = obs.device
    model = DynamicsEnsemble(obs.shape[1], action.shape[1], cfg).to(device)
    inputs = torch.cat([obs, action], dim=-1)
    model.in_mean.copy_(inputs.mean(0))
    model.in_std.copy_(inputs.std(0) + 1e-6)
    target = torch.cat([next_obs - obs, reward.unsqueeze(-1)], dim=-1)
    perm = torch.randperm(n, generator=gen).to(device)
    n_hold = min(int(cfg.holdout * n), cfg.max_holdout)
    hold, train = perm[:n_hold], perm[n_hold:]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    best = torch.full((cfg.n_members,), float("inf"))
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    stale, epochs = 0, 0
    while epochs < cfg.max_epochs:
        epochs += 1
        # each member sees its own bootstrap resample of the training split
        boot = train[torch.randint(len(train), (cfg.n_members, len(train)), generator=gen).to(device)]
        for start in range(0, len(train), cfg.batch_size):
            idx = boot[:, start:start + cfg.batch_size]  # [E, b]
            loss = model.loss(obs[idx], action[idx], target[idx], terminated[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        err = model.holdout_error(obs[hold], action[hold], target[hold]).cpu() if n_hold else best * 0
        improved = err < 0.99 * best  # a member improved by more than 1%
        if improved.any():
            best = torch.where(improved, err, best)
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
            stale = 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    err = model.holdout_error(obs[hold], action[hold], target[hold]).cpu() if n_hold else torch.zeros(cfg.n_members)
    model.elites.copy_(torch.argsort(err)[: cfg.n_elites].to(device))
    return model, {"epochs": float(epochs), "holdout_mse": float(err[model.elites.cpu()].mean()),
                   "holdout_mse_all": float(np.mean(err.numpy()))}
