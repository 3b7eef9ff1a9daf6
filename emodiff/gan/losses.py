"""The GAN's objectives and the mixup GAN's mixed reals. Scores s = D(x, y) are [B] tensors.

- hinge (Lim & Ye 2017; used with spectral normalisation by Miyato et al. 2018):
  L_D = E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))],  L_G = -E[D(G(z))];
- WGAN-GP (Gulrajani et al. 2017): L_D = E[D(G(z))] - E[D(x)] + lambda E[(||grad D(x_hat)||_2 - 1)^2],
  x_hat = e x + (1 - e) G(z), e ~ U[0, 1] per example;  L_G = -E[D(G(z))];
- mixup of reals (Zhang et al. 2018, as Latif et al. 2020 apply it to an emotion GAN's discriminator):
  x_mix = l x_i + (1 - l) x_j, conditions mixed with the same l, l ~ Beta(alpha, alpha).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from emodiff.gan.networks import N_EMOTIONS, pooled_text


def d_hinge(real: Tensor, fake: Tensor) -> Tensor:
    """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def d_wasserstein(real: Tensor, fake: Tensor) -> Tensor:
    """E[D(G(z))] - E[D(x)] (the critic's loss, without its penalty)."""
    return fake.mean() - real.mean()


def g_adversarial(fake: Tensor) -> Tensor:
    """-E[D(G(z))]: the generator's loss under both objectives."""
    return -fake.mean()


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, gen: torch.Generator) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = e x + (1 - e) G(z), e ~ U[0, 1] per example [B, 1, 1]."""
    e = torch.rand((len(real), 1, 1), generator=gen).to(real)
    x_hat = (e * real + (1 - e) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def mix_reals(x: Tensor, cond: dict[str, Tensor], alpha: float, n_speakers: int, gen: torch.Generator,
              text: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """Each real example mixed with a random other one: x [B, M, F] -> l x + (1 - l) x[perm], and conditions as
    one-hot weights mixed alike (emotion_weights [B, 4], speaker_weights [B, S + 1], and the pooled text).

    l ~ Beta(alpha, alpha) comes from two Gamma(alpha) draws (torch's Beta has no generator argument),
    so the loop's seeded stream alone decides it and a resumed run mixes as the uninterrupted one did.
    """
    b = len(x)
    perm = torch.randperm(b, generator=gen)
    lam = _beta(alpha, b, gen).to(x)
    mixed = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[perm.to(x.device)]

    def onehot_mix(index: Tensor, classes: int) -> Tensor:
        onehot = F.one_hot(index.long(), classes).to(x)
        return lam[:, None] * onehot + (1 - lam[:, None]) * onehot[perm.to(x.device)]

    out = {"emotion_weights": onehot_mix(cond["emotion"], N_EMOTIONS),
           "speaker_weights": onehot_mix(cond["speaker"], n_speakers + 1)}
    if text:
        pooled = pooled_text(cond["tokens"], cond["mask"])
        out["pooled"] = lam[:, None] * pooled + (1 - lam[:, None]) * pooled[perm.to(x.device)]
    return mixed, out


def _beta(alpha: float, n: int, gen: torch.Generator) -> Tensor:
    """n draws of Beta(alpha, alpha) = G1 / (G1 + G2), G ~ Gamma(alpha, 1), in float64."""
    g1, g2 = _gamma(alpha, n, gen), _gamma(alpha, n, gen)  # float64: at small alpha both are often < 1e-38
    return g1 / (g1 + g2)


def _gamma(alpha: float, n: int, gen: torch.Generator) -> Tensor:
    """n draws of Gamma(alpha, 1) (Marsaglia & Tsang 2000; alpha < 1 through Gamma(alpha + 1) U^(1 / alpha))."""
    boost = alpha < 1
    a = alpha + 1 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.empty(n, dtype=torch.float64)
    todo = torch.arange(n)
    while len(todo):
        z = torch.randn(len(todo), generator=gen, dtype=torch.float64)
        u = torch.rand(len(todo), generator=gen, dtype=torch.float64)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if boost:
        out = out * torch.rand(n, generator=gen, dtype=torch.float64) ** (1.0 / alpha)
    return out
