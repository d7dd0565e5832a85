"""Observation encoders and decoders for world models: an MLP on symlog-scaled vectors, or a CNN on images.

Images are ``[H, W, C]`` with values in ``[0, 255]``; the CNN halves the
resolution with stride-2 convolutions until it is 4 or less, doubling the
channels from ``depth`` (DreamerV3's encoder), and the decoder mirrors it.
Every hidden convolution is followed by a layer norm over its feature map
(``GroupNorm(1, C)``) and SiLU, as DreamerV3 normalises its CNN layers.
Without the norm, the world model on ``polyrl/PixelCartPole-v0`` at the
default learning rate (1e-4) stayed at the mean image for the first 1000+
updates: its latents carried no information about the pole (the agent then
never learned; see docs/algorithms/dreamer.md).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from polyrl.nets.mlp import mlp
from polyrl.returns import symlog


class Encoder(nn.Module):
    """Observations ``[..., *O]`` -> latent logits ``[..., out]``: an MLP on symlog(vector) or a CNN on uint8-valued images ``[H, W, C]``."""

    def __init__(self, obs_shape: tuple[int, ...], out: int, hidden: tuple[int, ...], depth: int) -> None:
        super().__init__()
        self.obs_shape, self.pixels = obs_shape, len(obs_shape) == 3
        if self.pixels:
            h, w, c = obs_shape
            layers: list[nn.Module] = []
            while h > 4:
                layers += [nn.Conv2d(c, depth, 4, 2, 1), nn.GroupNorm(1, depth), nn.SiLU()]
                c, h, w, depth = depth, h // 2, w // 2, depth * 2
            self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * h * w, out))
        else:
            self.net = mlp(int(math.prod(obs_shape)), out, hidden, "silu")

    def forward(self, obs: Tensor) -> Tensor:
        lead = obs.shape[: obs.dim() - len(self.obs_shape)]
        if self.pixels:
            x = (obs.reshape(-1, *self.obs_shape) / 255.0 - 0.5).permute(0, 3, 1, 2)
            return self.net(x).reshape(*lead, -1)
        return self.net(symlog(obs.reshape(*lead, -1)))


class Decoder(nn.Module):
    """Latents ``[..., in]`` -> reconstruction loss against observations (per sample)."""

    def __init__(self, obs_shape: tuple[int, ...], inp: int, hidden: tuple[int, ...], depth: int) -> None:
        super().__init__()
        self.obs_shape, self.pixels = obs_shape, len(obs_shape) == 3
        if self.pixels:
            h, w, c = obs_shape
            n = 0
            while h > 4:
                h, w, n = h // 2, w // 2, n + 1
            chans = [depth * 2 ** i for i in range(n)][::-1]  # mirror of the encoder
            self.start = (chans[0], h, w)
            layers: list[nn.Module] = [nn.Linear(inp, chans[0] * h * w), nn.Unflatten(-1, self.start)]
            for a, b in zip(chans, chans[1:]):
                layers += [nn.GroupNorm(1, a), nn.SiLU(), nn.ConvTranspose2d(a, b, 4, 2, 1)]
            layers += [nn.GroupNorm(1, chans[-1]), nn.SiLU(), nn.ConvTranspose2d(chans[-1], c, 4, 2, 1)]
            self.net = nn.Sequential(*layers)
        else:
            self.net = mlp(inp, int(math.prod(obs_shape)), hidden, "silu")

    def loss(self, z: Tensor, obs: Tensor) -> Tensor:
        lead = z.shape[:-1]
        if self.pixels:
            pred = self.net(z.reshape(-1, z.shape[-1]))
            target = (obs.reshape(-1, *self.obs_shape) / 255.0 - 0.5).permute(0, 3, 1, 2)
            return (pred - target).pow(2).flatten(1).sum(-1).reshape(lead)
        return (self.net(z) - symlog(obs.reshape(*lead, -1))).pow(2).sum(-1)


__all__ = ["Decoder", "Encoder"]
