"""Gaussian diffusion (Ho et al. 2020; Nichol & Dhariwal 2021, "IDDPM"): forward process, hybrid loss, samplers.

Notation: abar_t = prod_{s<=t} (1 - beta_s); steps t = 0..T-1 of *this* process (a respaced process has
T = S and a ``timestep_map`` to the original steps the model was trained on). Shapes: x [B, C, F] (B mels of
C = 80 bands and F frames; any trailing dims work), t [B] long, model output [B, 2C, F] = (eps, v) with a learned
variance, else [B, C, F] = eps. Tables are float64 numpy, computed once; ``_extract`` gathers them in float64 and
casts the gathered [B] values to the data's dtype only where they multiply the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from emodiff.config import DiffusionConfig
from emodiff.diffusion.schedule import cosine_betas, linear_betas, respaced_betas, space_timesteps

Model = Callable[..., Tensor]  # model(x_t [B, C, F], t [B] original step indices, **model_kwargs) -> [B, 2C|C, F]
Progress = Callable[[], Any]  # called once after every sampling step (the CLI advances a bar)
LN2 = math.log(2.0)


class GaussianDiffusion:
    """A T-step Gaussian diffusion over ``betas`` (float64 [T]) with epsilon prediction.

    ``learn_sigma``: the model also outputs v in [-1, 1] and the reverse variance is learned in the range
    [beta_tilde_t, beta_t] (IDDPM eq. 15), trained by ``lambda_vb`` x L_vlb; else it is fixed to beta_tilde_t.
    ``timestep_map[i]`` is the original step the model sees for step i (identity unless respaced).
    """

    def __init__(self, betas: np.ndarray, learn_sigma: bool = True, lambda_vb: float = 0.001,
                 timestep_map: list[int] | None = None,
                 clip_bounds: tuple[Tensor | float, Tensor | float] = (-1.0, 1.0)) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0 or not np.all((betas > 0) & (betas <= 1)):
            raise ValueError(f"betas must be a non-empty 1-D array in (0, 1], got shape {betas.shape}")
        if not isinstance(learn_sigma, bool):
            raise ValueError(f"learn_sigma must be true or false, got {learn_sigma!r}")
        if not lambda_vb >= 0:
            raise ValueError(f"lambda_vb must be >= 0, got {lambda_vb!r}")
        T = len(betas)
        steps = np.arange(T) if timestep_map is None else np.asarray(timestep_map, dtype=np.int64)
        if steps.shape != (T,) or np.any(steps < 0):
            raise ValueError(f"timestep_map must list {T} non-negative original steps, got {timestep_map!r}")
        self.betas, self.num_timesteps = betas, T
        self.learn_sigma, self.lambda_vb = learn_sigma, float(lambda_vb)
        # Where clip_denoised clamps predicted x_0: [-1, 1] for raw mels, per-bin bounds [1, C, 1]
        # for mels normalised per bin (emodiff.diffusion.normalize).
        self.clip_bounds = clip_bounds
        self.timestep_map = steps.astype(np.int64)

        # q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), and its inverse x_0 = (x_t - sqrt(1 - abar_t) eps) / ...
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.one_minus_alphas_cumprod = 1.0 - self.alphas_cumprod
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)

        # q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta_tilde_t I) (Ho et al. eq. 6-7).
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # beta_tilde_0 = 0; its log is clipped to beta_tilde_1 (the t = 0 step adds no noise anyway). A one-step
        # process has no beta_tilde_1, so it uses beta_0, the other end of the learned range.
        first = self.posterior_variance[1] if T > 1 else betas[0]
        self.posterior_log_variance_clipped = np.log(np.append(first, self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

        # p(x_{t-1} | x_t): the upper end of the learned log-variance range.
        self.log_betas = np.log(betas)
        self._on_device: dict[tuple[str, str], Tensor] = {}  # float64 copies of the tables, per device

    # -- tables -----------------------------------------------------------------------------------------------
    def _gather(self, name: str, t: Tensor) -> Tensor:
        """table[t] [B] in the table's own dtype (float64), on t's device (on CPU where it has no float64)."""
        device = t.device if t.device.type != "mps" else torch.device("cpu")
        key = (name, str(device))
        if key not in self._on_device:
            self._on_device[key] = torch.from_numpy(getattr(self, name)).to(device)
        return self._on_device[key][t.to(device)]

    def _extract(self, name: str, t: Tensor, like: Tensor) -> Tensor:
        """table[t] as [B, 1, ..., 1], cast to like's dtype only after the float64 gather."""
        return _at_use(self._gather(name, t), like)

    def _scale_timesteps(self, t: Tensor) -> Tensor:
        """The original process's step indices [B] long that the model is conditioned on."""
        return self._gather("timestep_map", t).to(t.device)

    # -- forward process --------------------------------------------------------------------------------------
    def q_mean_variance(self, x_start: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I): (mean [B, C, F], variance, log-variance [B, 1, 1])."""
        mean = self._extract("sqrt_alphas_cumprod", t, x_start) * x_start
        return (mean, self._extract("one_minus_alphas_cumprod", t, x_start),
                self._extract("log_one_minus_alphas_cumprod", t, x_start))

    def q_sample(self, x_start: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """x_t ~ q(x_t | x_0): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, eps ~ N(0, I); x_start [B, C, F]."""
        noise = torch.randn_like(x_start) if noise is None else noise
        if noise.shape != x_start.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected x_start's {tuple(x_start.shape)}")
        return (self._extract("sqrt_alphas_cumprod", t, x_start) * x_start
                + self._extract("sqrt_one_minus_alphas_cumprod", t, x_start) * noise)

    def q_posterior_mean_variance(self, x_start: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q(x_{t-1} | x_t, x_0) = N(coef1_t x_0 + coef2_t x_t, beta_tilde_t I), beta_tilde_t =
        beta_t (1 - abar_{t-1}) / (1 - abar_t): (mean [B, C, F], variance, clipped log-variance [B, 1, 1])."""
        mean = (self._extract("posterior_mean_coef1", t, x_t) * x_start
                + self._extract("posterior_mean_coef2", t, x_t) * x_t)
        return (mean, self._extract("posterior_variance", t, x_t),
                self._extract("posterior_log_variance_clipped", t, x_t))

    # -- reverse process --------------------------------------------------------------------------------------
    def p_mean_variance(
        self, model: Model, x_t: Tensor, t: Tensor, model_kwargs: dict[str, Any] | None = None,
        clip_denoised: bool = True,
    ) -> dict[str, Tensor]:
        """p(x_{t-1} | x_t) = N(mean, exp(log_variance)) from one model call; x_t [B, C, F], t [B].

        Returns mean, variance, log_variance, pred_xstart and eps, all [B, C, F]. ``clip_denoised`` clamps the x_0
        prediction to [-1, 1], the range of our mels.
        """
        output = model(x_t, self._scale_timesteps(t), **(model_kwargs or {}))
        eps, v = self._split(output, x_t)
        return self._p_from_output(x_t, t, eps, v, clip_denoised)

    def _split(self, output: Tensor, x_t: Tensor) -> tuple[Tensor, Tensor | None]:
        B, C, *rest = x_t.shape
        expected = (B, 2 * C if self.learn_sigma else C, *rest)
        if tuple(output.shape) != expected:
            raise ValueError(f"the model returned shape {tuple(output.shape)}, expected {expected} "
                             f"(learn_sigma={self.learn_sigma})")
        return (output, None) if not self.learn_sigma else (output[:, :C], output[:, C:])

    def _p_from_output(
        self, x_t: Tensor, t: Tensor, eps: Tensor, v: Tensor | None, clip_denoised: bool
    ) -> dict[str, Tensor]:
        # 1. Variance: log var = frac log beta_t + (1 - frac) log beta_tilde_t, frac = (v + 1) / 2 (IDDPM eq. 15).
        min_log = self._extract("posterior_log_variance_clipped", t, x_t)
        if v is None:
            log_variance = min_log.expand_as(x_t)
        else:
            frac = (v + 1) / 2
            log_variance = frac * self._extract("log_betas", t, x_t) + (1 - frac) * min_log
        # 2. x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (Ho et al. eq. 4 solved for x_0).
        pred_xstart = (self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t
                       - self._extract("sqrt_recipm1_alphas_cumprod", t, x_t) * eps)
        if clip_denoised:
            lo, hi = self.clip_bounds
            pred_xstart = pred_xstart.clamp(_bound(lo, x_t), _bound(hi, x_t))
            eps = self._predict_eps_from_xstart(x_t, t, pred_xstart)  # keep eps consistent with the clipped x_0
        # 3. Mean: the posterior mean with x_0 replaced by its prediction (Ho et al. eq. 7).
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x_t, t)
        return {"mean": mean, "variance": log_variance.exp(), "log_variance": log_variance,
                "pred_xstart": pred_xstart, "eps": eps}

    def _predict_eps_from_xstart(self, x_t: Tensor, t: Tensor, pred_xstart: Tensor) -> Tensor:
        """eps = (sqrt(1/abar_t) x_t - x_0) / sqrt(1/abar_t - 1); all [B, C, F]."""
        return ((self._extract("sqrt_recip_alphas_cumprod", t, x_t) * x_t - pred_xstart)
                / self._extract("sqrt_recipm1_alphas_cumprod", t, x_t))

    # -- training ---------------------------------------------------------------------------------------------
    def training_losses(
        self, model: Model, x_start: Tensor, t: Tensor, model_kwargs: dict[str, Any] | None = None,
        noise: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """IDDPM's hybrid loss for x_start [B, C, F] at steps t [B]; returns "loss", "mse", "vb", each [B].

        mse = mean over dims of ||eps - eps_theta(x_t, t)||^2 (L_simple). vb = L_t in bits per dim: at t > 0
        KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)); at t = 0 the decoder term -log2 N(x_0; mean, var) of
        p(x_0 | x_1), a Gaussian density because our mels are continuous. IDDPM's discretised likelihood assumes
        8-bit images: its bins (2/255 wide) are wider than the t = 0 noise (std ~ 3e-3 at T = 4000), so it would
        saturate near 0 bits and barely train the last variance; the density keeps sum_t L_t an upper bound on
        -log2 p(x_0) per dim (negative values are fine, as for any differential entropy). vb uses the model's mean
        with its gradient stopped, so it trains only the variance. L_vlb = sum_t L_t = T E_t[L_t], hence
        loss = mse + lambda_vb T vb (lambda_vb = 0.001 gives IDDPM's mse + vb T / 1000). Without a learned variance,
        loss = mse and vb is only reported.
        Weight the per-example loss by the timestep sampler's weights before averaging.
        """
        # float16 mels from the store, or a bf16 model under autocast: the KL of two nearly equal variances and
        # x_t itself need at least float32.
        work = torch.promote_types(x_start.dtype, torch.float32)
        x_start = x_start.to(work)
        noise = torch.randn_like(x_start) if noise is None else noise.to(work)
        x_t = self.q_sample(x_start, t, noise=noise)
        eps, v = self._split(model(x_t, self._scale_timesteps(t), **(model_kwargs or {})), x_t)
        eps = eps.to(work)
        mse = _mean_flat((noise - eps) ** 2)
        if v is None:
            with torch.no_grad():
                vb = self._vb_terms_bpd(x_start, x_t, t, eps, None)
            return {"loss": mse, "mse": mse, "vb": vb}
        vb = self._vb_terms_bpd(x_start, x_t, t, eps.detach(), v.to(work))
        return {"loss": mse + self.lambda_vb * self.num_timesteps * vb, "mse": mse, "vb": vb}

    def _vb_terms_bpd(self, x_start: Tensor, x_t: Tensor, t: Tensor, eps: Tensor, v: Tensor | None) -> Tensor:
        """L_t in bits per dim [B]: the KL at t > 0, the Gaussian decoder NLL at t = 0 (see training_losses)."""
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x_start, x_t, t)
        p = self._p_from_output(x_t, t, eps, v, clip_denoised=False)
        kl = _mean_flat(normal_kl(true_mean, true_log_variance, p["mean"], p["log_variance"])) / LN2
        nll = -_mean_flat(gaussian_log_likelihood(x_start, p["mean"], p["log_variance"])) / LN2
        return torch.where(t == 0, nll, kl)

    # -- sampling ---------------------------------------------------------------------------------------------
    def p_sample(
        self, model: Model, x: Tensor, t: Tensor, model_kwargs: dict[str, Any] | None = None,
        clip_denoised: bool = True, generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """x_{t-1} ~ p(x_{t-1} | x_t) = N(mean, exp(log var)), no noise at t = 0; x [B, C, F], t [B]."""
        out = self.p_mean_variance(model, x, t, model_kwargs, clip_denoised)
        noise = _randn_like(x, generator)
        sample = out["mean"] + _nonzero(t, x) * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(
        self, model: Model, x: Tensor, t: Tensor, model_kwargs: dict[str, Any] | None = None,
        clip_denoised: bool = True, eta: float = 0.0, generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """One DDIM step (Song et al. 2021, eq. 12); x [B, C, F], t [B]:

        x_{t-1} = sqrt(abar_{t-1}) x_0 + sqrt(1 - abar_{t-1} - sigma_t^2) eps + sigma_t z, with
        sigma_t^2 = eta^2 (1 - abar_{t-1}) / (1 - abar_t) (1 - abar_t / abar_{t-1}) = eta^2 beta_tilde_t.
        """
        out = self.p_mean_variance(model, x, t, model_kwargs, clip_denoised)
        # 1. Coefficients in float64 (1 - abar_{t-1} - sigma^2 cancels near t = 0), cast at use.
        abar_prev = self._gather("alphas_cumprod_prev", t)
        sigma2 = eta**2 * self._gather("posterior_variance", t)
        c_eps = (1.0 - abar_prev - sigma2).clamp(min=0.0).sqrt()
        # 2. Eq. 12, predicted x_0 and the eps that points to x_t.
        sample = _at_use(abar_prev.sqrt(), x) * out["pred_xstart"] + _at_use(c_eps, x) * out["eps"]
        if eta > 0:
            sample = sample + _nonzero(t, x) * _at_use(sigma2.sqrt(), x) * _randn_like(x, generator)
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def p_sample_loop(
        self, model: Model, shape: tuple[int, ...], model_kwargs: dict[str, Any] | None = None,
        noise: Tensor | None = None, generator: torch.Generator | None = None, progress: Progress | None = None,
        clip_denoised: bool = True, device: torch.device | str | None = None,
    ) -> Tensor:
        """Ancestral sampling x_T ~ N(0, I) -> x_0 through all steps of this process; returns [B, C, F]."""
        def step(x: Tensor, t: Tensor) -> Tensor:
            return self.p_sample(model, x, t, model_kwargs, clip_denoised, generator)["sample"]
        return self._sample_loop(step, model, shape, noise, generator, progress, device)

    def ddim_sample_loop(
        self, model: Model, shape: tuple[int, ...], model_kwargs: dict[str, Any] | None = None, eta: float = 0.0,
        noise: Tensor | None = None, generator: torch.Generator | None = None, progress: Progress | None = None,
        clip_denoised: bool = True, device: torch.device | str | None = None,
    ) -> Tensor:
        """DDIM sampling x_T ~ N(0, I) -> x_0 (deterministic at eta = 0, ancestral-like at 1); returns [B, C, F]."""
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM-like), got {eta!r}")

        def step(x: Tensor, t: Tensor) -> Tensor:
            return self.ddim_sample(model, x, t, model_kwargs, clip_denoised, eta, generator)["sample"]
        return self._sample_loop(step, model, shape, noise, generator, progress, device)

    def _sample_loop(
        self, step: Callable[[Tensor, Tensor], Tensor], model: Model, shape: tuple[int, ...], noise: Tensor | None,
        generator: torch.Generator | None, progress: Progress | None, device: torch.device | str | None,
    ) -> Tensor:
        """The loop both samplers share: x_{T-1} = noise, then x <- step(x, t) for t = T-1, ..., 0."""
        if noise is not None:
            if tuple(noise.shape) != tuple(shape):
                raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
            x = noise
        else:
            x = _randn(tuple(shape), generator, _device(model, generator, device), torch.float32)
        # no_grad rather than inference_mode: inference tensors cannot enter autograd later (e.g. a classifier
        # trained on the samples in the same process).
        with torch.no_grad():
            for i in reversed(range(self.num_timesteps)):
                x = step(x, torch.full((x.shape[0],), i, dtype=torch.long, device=x.device))
                if progress is not None:
                    progress()
        return x


class SpacedDiffusion(GaussianDiffusion):
    """The process that visits only ``kept_steps`` of the one over ``base_betas`` (IDDPM section 4).

    Its betas come from :func:`respaced_betas`, so q(x_i | x_0) equals the base q(x_{k_i} | x_0), and the model is
    called with the original step k_i. Other keyword arguments go to :class:`GaussianDiffusion`.
    """

    def __init__(self, base_betas: np.ndarray, kept_steps: list[int], **kwargs: Any) -> None:
        kept = [int(k) for k in kept_steps]
        super().__init__(respaced_betas(base_betas, kept), timestep_map=kept, **kwargs)
        self.base_num_timesteps = len(base_betas)


def create_diffusion(cfg: DiffusionConfig, respace: int | None = None,
                     clip_bounds: tuple[Tensor | float, Tensor | float] = (-1.0, 1.0)) -> GaussianDiffusion:
    """The process of ``cfg`` with cfg.steps steps, or respaced to ``respace`` evenly strided steps for sampling."""
    if cfg.schedule == "cosine":
        betas = cosine_betas(cfg.steps)
    elif cfg.schedule == "linear":
        betas = linear_betas(cfg.steps)
    else:
        raise ValueError(f"unknown noise schedule {cfg.schedule!r}; expected one of: cosine, linear")
    if respace is None:
        return GaussianDiffusion(betas, learn_sigma=cfg.learn_sigma, lambda_vb=cfg.lambda_vb,
                                 clip_bounds=clip_bounds)
    kept = space_timesteps(cfg.steps, respace)
    return SpacedDiffusion(betas, kept, learn_sigma=cfg.learn_sigma, lambda_vb=cfg.lambda_vb,
                           clip_bounds=clip_bounds)


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats (broadcasting)."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def gaussian_log_likelihood(x: Tensor, mean: Tensor, log_variance: Tensor) -> Tensor:
    """log N(x; mean, e^log_variance) elementwise, in nats: a density, so it can exceed 0 for small variances."""
    return -0.5 * (math.log(2 * math.pi) + log_variance + (x - mean) ** 2 * torch.exp(-log_variance))


def _bound(value: Tensor | float, like: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


def _mean_flat(x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def _at_use(values: Tensor, like: Tensor) -> Tensor:
    """[B] values -> [B, 1, ..., 1] in like's dtype and device, for broadcasting against like."""
    return values.to(like.dtype).to(like.device).view(-1, *([1] * (like.ndim - 1)))


def _nonzero(t: Tensor, like: Tensor) -> Tensor:
    """1 where t > 0, 0 at t = 0 (the last step adds no noise); [B, 1, ..., 1]."""
    return (t != 0).to(like.dtype).to(like.device).view(-1, *([1] * (like.ndim - 1)))


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device, dtype: torch.dtype
           ) -> Tensor:
    """N(0, I) drawn on the generator's device, then moved: a CPU generator reproduces the same samples on GPU."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return _randn(tuple(x.shape), generator, x.device, x.dtype)


def _device(model: Model, generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    """Where to sample: the given device, else the model's parameters', else the generator's, else CPU."""
    if device is not None:
        return torch.device(device)
    first = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    if first is not None:
        return first.device
    return generator.device if generator is not None else torch.device("cpu")
