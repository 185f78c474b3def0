"""The BG-SPP chapter's small worked examples: a 2-D toy trained three ways, and what one patch receives from
BG-SPP and from a conventional push-pull.

    cfg = toy_config()                                   # β, τ, normaliser, λ of the official run, focal off
    data = toy_data(seed=0)                              # a normal cloud, a seen and an unseen anomaly cluster
    flows = train_toy(data, cfg, steps=(600, 600), seed=0)   # {"nf": flow, "pushpull": flow, "bgad": flow}
    toy_summary(flows["bgad"], data, cfg)                # b_n, b_a and the shares on either side of them

The toy's flow is the Flows chapter's FrEIA flow (a `SequenceINN` of `AllInOneBlock`s with a soft permutation,
unconditional). The three trainings share phase 1 (L_ml on the normal points) and differ only in phase 2, whose
objective is the package's own (`train.ml_objective`, `train.make_objective`, i.e. `losses.ml_loss`,
`losses.pushpull_loss`, `losses.bg_spp_loss` with `boundary.boundaries`), so the toy trains with the very losses
the runs train with. Units: ℓ = log p / 2 (per dimension, C = 2), x = ℓ / normaliser. Introduced in the *BG-SPP*
chapter.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .config import Config

#: The three trainings of the toy: phase 2 with L_ml only, with BGAD†'s push-pull, with BG-SPP.
METHODS = ("nf", "pushpull", "bgad")


@dataclass
class ToyData:
    """The toy's points, (n, 2) float32 tensors: normal (training and held-out), seen anomalies (the known ones,
    used in phase 2) and unseen anomalies (never trained on)."""

    normal: Tensor
    normal_test: Tensor
    seen: Tensor
    unseen: Tensor


def toy_data(seed: int = 0, n_normal: int = 1000, n_seen: int = 30, n_unseen: int = 200, radius: float = 3.5,
             spread: float = 0.3) -> ToyData:
    """Normal points ~ N(0, I₂); a seen cluster centred at (radius, 0) and an unseen one at the same distance from
    the origin, 135° away, each an isotropic Gaussian of std `spread`. At radius 3.5 both centres lie between the
    b_n and b_a contours of the *true* normal density at β = 0.01, τ = 1 nat per dimension (radii 3.03 and 3.63):
    anomalies in the margin, where the boundary has something to do."""
    rng = np.random.default_rng(seed)
    unseen_centre = radius * np.array([np.cos(0.75 * np.pi), np.sin(0.75 * np.pi)])
    as_t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))  # noqa: E731
    return ToyData(normal=as_t(rng.standard_normal((n_normal, 2))),
                   normal_test=as_t(rng.standard_normal((n_normal, 2))),
                   seen=as_t(np.array([radius, 0.0]) + spread * rng.standard_normal((n_seen, 2))),
                   unseen=as_t(unseen_centre + spread * rng.standard_normal((n_unseen, 2))))


def toy_config(**overrides) -> Config:
    """The boundary and loss settings of the official run (β 0.01, τ 0.1, normaliser 10, λ 1) with the focal
    weights off: L_bg-spp as the paper prints it. The normaliser and τ keep their units, so the margin is 1 nat
    per dimension of ℓ (2 nats of log p in 2-D) and BG-SPP weighs against L_ml as in the official run."""
    return Config(**{"beta": 0.01, "tau": 0.1, "normalizer": 10.0, "lam": 1.0, "focal": False, **overrides})


def toy_flow(seed: int = 0, n_blocks: int = 2, hidden: int = 32, clamp: float = 2.0) -> nn.Module:
    """The Flows chapter's FrEIA flow in 2-D: `n_blocks` `AllInOneBlock`s (affine coupling with a soft clamp, a
    global affine, a fixed random rotation), each subnet an MLP with two hidden layers of `hidden` units.

    FrEIA draws each rotation from NumPy's global RNG: it is seeded with `seed` while the blocks are built and
    restored afterwards; the subnets are initialised from torch's RNG seeded with `seed`."""
    import FrEIA.framework as Ff
    import FrEIA.modules as Fm

    def subnet(d_in: int, d_out: int) -> nn.Module:
        return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, d_out))

    torch.manual_seed(seed)
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        flow = Ff.SequenceINN(2)
        for _ in range(n_blocks):
            flow.append(Fm.AllInOneBlock, subnet_constructor=subnet, affine_clamping=clamp, permute_soft=True)
    finally:
        np.random.set_state(saved)
    return flow


def toy_loglik(flow: nn.Module, x: Tensor) -> Tensor:
    """ℓ = log p(x) / 2 under the toy flow, shape (n,)."""
    from .flow import gaussian_log_likelihood

    z, log_det = flow(x)
    return gaussian_log_likelihood(z, log_det) / x.shape[1]


#: How the chapter names the toy's trainings; `bgad_pull` and `bgad_push` are BG-SPP with one of its two terms.
LABELS = {"nf": "ML only", "pushpull": "push-pull (BGAD†)", "bgad": "BG-SPP (BGAD)",
          "bgad_pull": "BG-SPP, pull term only", "bgad_push": "BG-SPP, push term only"}


class SppPart:
    """L_ml + λ·one term of L_bg-spp: `losses.bg_spp_loss` on the normal points only ("pull") or on the anomalies
    only ("push"), with (b_n, b_a) from this step's normal ℓ (`boundary.boundaries`). Which half of BG-SPP moves
    what, in the toy; not a method of the runs."""

    def __init__(self, cfg: Config, term: str) -> None:
        self.cfg, self.term = cfg, term

    def __call__(self, level: int, loglik: Tensor, abnormal: Tensor) -> tuple[Tensor, dict]:
        from .boundary import boundaries
        from .losses import bg_spp_loss, ml_loss

        c = self.cfg
        b_n, b_a = boundaries(loglik[~abnormal].detach(), c.beta, c.tau, c.normalizer)
        keep = ~abnormal if self.term == "pull" else abnormal
        spp, stats = bg_spp_loss(loglik[keep], abnormal[keep], b_n, b_a, c.normalizer)
        return ml_loss(loglik[~abnormal]) + c.lam * spp, stats


def objective_for(method: str, cfg: Config):
    """The phase-2 objective of a toy training: the runs' own (`train.make_objective`; `nf` → `train.ml_objective`)
    or one half of BG-SPP (`bgad_pull`, `bgad_push`)."""
    from .train import make_objective, ml_objective

    if method in ("bgad_pull", "bgad_push"):
        return SppPart(cfg, method.split("_")[1])
    return make_objective(cfg.with_overrides(method=method), 1) or ml_objective


def _fit(flow: nn.Module, objective, x: Tensor, abnormal: Tensor, steps: int, lr: float) -> None:
    """`steps` full-batch Adam steps on objective(level 0, ℓ(x), abnormal)."""
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    for _ in range(steps):
        loss, _ = objective(0, toy_loglik(flow, x), abnormal)
        opt.zero_grad()
        loss.backward()
        opt.step()


def train_toy(data: ToyData, cfg: Config, steps: tuple[int, int] = (600, 600), lr: float = 1e-3, seed: int = 0,
              methods: Sequence[str] = METHODS) -> dict[str, nn.Module]:
    """Phase 1: L_ml on the normal points (`train.ml_objective`), once. Phase 2, from a copy of that flow for each
    method: the normal points and the seen anomalies, with the method's phase-2 objective (`objective_for`:
    `nf`: L_ml alone; `pushpull`: `losses.pushpull_loss`; `bgad`: L_ml + λ·L_bg-spp with (b_n, b_a) from this
    step's normal ℓ). Every step sees every point (one chunk), so the result depends on `seed` alone."""
    from .train import ml_objective

    flow = toy_flow(seed)
    normal = torch.zeros(len(data.normal), dtype=torch.bool)
    _fit(flow, ml_objective, data.normal, normal, steps[0], lr)
    x = torch.cat([data.normal, data.seen])
    abnormal = torch.cat([normal, torch.ones(len(data.seen), dtype=torch.bool)])
    out = {}
    for method in methods:
        out[method] = copy.deepcopy(flow)
        _fit(out[method], objective_for(method, cfg), x, abnormal, steps[1], lr)
    return out


def train_seeds(seeds: Sequence[int], cfg: Config, steps: tuple[int, int] = (600, 600), lr: float = 1e-3,
                methods: Sequence[str] = METHODS) -> dict[int, tuple[ToyData, dict[str, nn.Module]]]:
    """The toy at several seeds, each drawing new points and a new flow: {seed: (data, {method: flow})}."""
    out = {}
    for seed in seeds:
        data = toy_data(int(seed))
        out[int(seed)] = (data, train_toy(data, cfg, steps, lr, int(seed), methods))
    return out


def seed_rows(trained: dict[int, tuple[ToyData, dict[str, nn.Module]]], cfg: Config) -> list[dict]:
    """One row per seed and method: `toy_summary`'s numbers with "seed" and "method"."""
    return [{"seed": s, "method": m, **toy_summary(f, data, cfg)} for s, (data, flows) in trained.items()
            for m, f in flows.items()]


def typical_seed(rows: Sequence[dict], method: str = "bgad", base: str = "nf", key: str = "unseen_below_ba") -> int:
    """The seed whose change `method` − `base` in `key` is the median over the seeds (the lower middle one for an
    even count): a typical seed to draw, not a chosen one."""
    by = {(r["seed"], r["method"]): r[key] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    change = sorted(seeds, key=lambda s: (by[s, method] - by[s, base], s))
    return change[(len(change) - 1) // 2]


@torch.no_grad()
def toy_summary(flow: nn.Module, data: ToyData, cfg: Config) -> dict[str, float]:
    """(b_n, b_a) in x units from the normal training points (`boundary.boundaries`), their ℓ levels, and shares:
    held-out normal points above b_n; seen and unseen anomalies below b_a (flagged anomalous), in the margin, and
    at or above b_n (as likely as a normal point); the median x of each cluster (how far it was pushed)."""
    from .boundary import boundaries

    b_n, b_a = (float(b) for b in boundaries(toy_loglik(flow, data.normal), cfg.beta, cfg.tau, cfg.normalizer))
    x = {k: (toy_loglik(flow, getattr(data, k)) / cfg.normalizer).numpy() for k in ("normal_test", "seen", "unseen")}
    out = {"b_n": b_n, "b_a": b_a, "ell_bn": b_n * cfg.normalizer, "ell_ba": b_a * cfg.normalizer,
           "normal_above_bn": float(np.mean(x["normal_test"] > b_n))}
    for k in ("seen", "unseen"):
        out[f"{k}_below_ba"] = float(np.mean(x[k] <= b_a))
        out[f"{k}_in_margin"] = float(np.mean((x[k] > b_a) & (x[k] < b_n)))
        out[f"{k}_above_bn"] = float(np.mean(x[k] >= b_n))
        out[f"{k}_median_x"] = float(np.median(x[k]))
    return out


@torch.no_grad()
def loglik_grid(flow: nn.Module, half_width: float = 5.0, n: int = 200) -> tuple[np.ndarray, float, tuple]:
    """ℓ at the centres of an n×n grid on [−w, w]²: (ℓ grid, rows along y; cell area; extent (x0, x1, y0, y1))."""
    h = 2 * half_width / n
    centres = -half_width + h * (np.arange(n) + 0.5)
    gx, gy = np.meshgrid(centres, centres)
    pts = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32))
    ell = torch.cat([toy_loglik(flow, chunk) for chunk in pts.split(65536)]).numpy().reshape(n, n)
    return ell, h * h, (-half_width, half_width, -half_width, half_width)


def patch_losses(ell: np.ndarray, b_n: float, b_a: float, normalizer: float = 10.0, lam: float = 1.0
                 ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The phase-2 loss one patch contributes, alone in its batch, and dL/dℓ by autograd, at each ℓ of `ell`:
    {"BG-SPP": {"normal": (L, dL/dℓ), "anomalous": (L, dL/dℓ)}, "push-pull": {...}}.

    BG-SPP: L_ml + λ·L_bg-spp for a normal patch, λ·L_bg-spp for an anomalous one (`losses.ml_loss`,
    `losses.bg_spp_loss`, focal weights off, boundaries fixed); push-pull: `losses.pushpull_loss` with push weight
    λ. In a batch with V violating patches each one gets 1/V of the BG-SPP term (its mean runs over violators)."""
    from .losses import bg_spp_loss, ml_loss, pushpull_loss

    def bgspp(l: Tensor, abnormal: Tensor) -> Tensor:
        spp = bg_spp_loss(l, abnormal, b_n, b_a, normalizer)[0]
        return lam * spp if bool(abnormal.all()) else ml_loss(l) + lam * spp

    losses = {"BG-SPP": bgspp, "push-pull": lambda l, a: pushpull_loss(l, a, normalizer, push_weight=lam)[0]}
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for name, fn in losses.items():
        out[name] = {}
        for kind, flag in (("normal", False), ("anomalous", True)):
            values, grads = [], []
            for v in np.asarray(ell, dtype=np.float64).ravel():
                l = torch.tensor([v], dtype=torch.float64, requires_grad=True)
                loss = fn(l, torch.tensor([flag]))
                (g,) = torch.autograd.grad(loss, l)
                values.append(float(loss.detach()))
                grads.append(float(g[0]))
            out[name][kind] = (np.array(values), np.array(grads))
    return out


def loss_curves(x: np.ndarray, b_n: float, b_a: float, normalizer: float = 10.0):
    """λ ↦ (x, loss of a normal patch, loss of an anomalous patch) at each x = ℓ/normaliser under BGAD's phase-2
    loss (`patch_losses`' "BG-SPP"), from `patch_losses` at λ = 0 and λ = 1: the loss is linear in λ."""
    x = np.asarray(x, dtype=np.float64)
    at0, at1 = (patch_losses(x * normalizer, b_n, b_a, normalizer, lam)["BG-SPP"] for lam in (0.0, 1.0))

    def curves(lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, a = (at0[k][0] + lam * (at1[k][0] - at0[k][0]) for k in ("normal", "anomalous"))
        return x, n, a

    return curves
