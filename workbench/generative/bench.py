"""`workbench bench diffusion`: speed and quality-per-NFE of the generative pieces, side by side in one process.

- **Training steps/s** of the small UNet (16×16, base 32, batch 64) for the discrete-time loss (v-prediction)
  and the PFGM++ loss at D = 128 vs D = ∞ (EDM). The two PFGM++ arms alternate in rounds; their median
  time ratio is PFGM++'s extra cost over EDM per step (goal ≤ 5 %: only the noise draw differs).
- **Sampling samples/s** of the same UNet under Heun and Euler (σ-space, PFGM++ D = 128 and EDM),
  DDIM and DDPM at equal NFE, with the PFGM++/EDM Heun ratio (only the prior draw differs).
- **Quality against NFE**, Heun vs Euler, with the exact denoiser of an 8-mode 2-D mixture (no training,
  so the numbers are the sampler's alone): sliced W1 of 2,000 samples to the 2,000 points.
"""

from __future__ import annotations

import math
import platform
import statistics
import time

import numpy as np
import torch

from workbench.generative import pfgmpp, schedules
from workbench.generative.data import mixture_2d
from workbench.generative.losses import (
    EDMPrecond,
    diffusion_loss,
    diffusion_noise,
    pfgmpp_loss,
    pfgmpp_noise,
    timestep_condition,
)
from workbench.generative.metrics import sliced_wasserstein
from workbench.generative.networks import UNetDenoiser
from workbench.generative.oracle import pfgmpp_denoiser
from workbench.generative.samplers import ddim_sample, ddpm_sample, edm_sigmas, heun_sample

IMAGE, BATCH, BASE = 16, 64, 32


def _timed(fn, repeats: int, sync) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def _training_steps(device: str, quick: bool) -> dict:
    on_gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    batch = 256 if on_gpu else BATCH
    x = torch.randn(batch, 1, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0)).to(device)
    alpha_bar = schedules.alphas_cumprod(schedules.rescale_zero_terminal_snr(schedules.make_betas()))
    steps: dict = {}
    for arm in ("pfgmpp_D128", "edm", "v_prediction"):
        torch.manual_seed(0)
        net = UNetDenoiser(1, BASE).to(device)
        model = EDMPrecond(net) if arm != "v_prediction" else net
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        rng = np.random.default_rng(0)
        generator = torch.Generator().manual_seed(0)

        def step(arm=arm, model=model, optimizer=optimizer, rng=rng, generator=generator):
            # The noise draw is part of the step: it is the only place where PFGM++ and EDM differ.
            with torch.autocast("cuda", torch.bfloat16, enabled=on_gpu):
                if arm == "v_prediction":
                    t, eps = diffusion_noise(generator, tuple(x.shape), len(alpha_bar))
                    loss = diffusion_loss(model, x, alpha_bar, "v_prediction", t, eps)
                else:
                    sigma, noise = pfgmpp_noise(rng, len(x), x[0].numel(), 128.0 if arm == "pfgmpp_D128" else math.inf)
                    loss = pfgmpp_loss(model, x, torch.from_numpy(sigma), torch.from_numpy(noise))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for _ in range(2):
            step()
        steps[arm] = step
    rounds, repeats = (3, 2) if quick else (7, 5)
    times = {arm: [] for arm in steps}
    for _ in range(rounds):
        for arm, step in steps.items():
            times[arm].append(_timed(step, repeats, sync))
    ratio = statistics.median(a / b for a, b in zip(times["pfgmpp_D128"], times["edm"]))
    return {
        "batch": batch,
        "steps_per_s": {arm: 1 / statistics.median(t) for arm, t in times.items()},
        "pfgmpp_over_edm": ratio - 1,
        "rounds": rounds,
    }


def _sampling(device: str, quick: bool) -> dict:
    on_gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    count = 1024 if on_gpu else (64 if quick else 256)
    torch.manual_seed(0)
    net = UNetDenoiser(1, BASE).to(device).eval()
    precond = EDMPrecond(net)
    shape = (count, 1, IMAGE, IMAGE)

    def denoise(x, sigma):
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=on_gpu):
            return precond(x.float(), sigma.float()).double()

    def model(x, t):
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=on_gpu):
            return net(x.float(), timestep_condition(t, 1000)).double()

    alpha_bar = schedules.alphas_cumprod(schedules.rescale_zero_terminal_snr(schedules.make_betas()))
    heun_steps = 5 if quick else 9  # NFE 2n − 1 = 9 or 17
    nfe = 2 * heun_steps - 1
    rng = np.random.default_rng(0)

    def prior(D):
        return torch.from_numpy(pfgmpp.prior(count, IMAGE * IMAGE, D, 80.0, rng)).reshape(shape).to(device)

    def discrete(sampler):  # DDIM / DDPM with a v-prediction model over the trailing timesteps
        noise = torch.randn(shape, dtype=torch.float64, device=device)
        return sampler(model, noise, alpha_bar, schedules.timesteps("trailing", 1000, nfe), "v_prediction")

    arms = {
        "heun_pfgmpp_D128": lambda: heun_sample(denoise, prior(128.0), edm_sigmas(heun_steps)),
        "heun_edm": lambda: heun_sample(denoise, prior(math.inf), edm_sigmas(heun_steps)),
        "euler_edm": lambda: heun_sample(denoise, prior(math.inf), edm_sigmas(nfe), heun=False),
        "ddim": lambda: discrete(ddim_sample),
        "ddpm": lambda: discrete(ddpm_sample),
    }
    for fn in arms.values():
        fn()
    rounds = 2 if quick else 5
    times = {arm: [] for arm in arms}
    for _ in range(rounds):
        for arm, fn in arms.items():
            times[arm].append(_timed(fn, 1, sync))
    ratio = statistics.median(a / b for a, b in zip(times["heun_pfgmpp_D128"], times["heun_edm"]))
    return {
        "count": count,
        "nfe": nfe,
        "samples_per_s": {a: count / statistics.median(t) for a, t in times.items()},
        "pfgmpp_over_edm": ratio - 1,
    }


def _quality_vs_nfe(quick: bool) -> dict:
    # The exact denoiser's target is the empirical law of `points`, so samples are scored against
    # `points` themselves: 0 is reachable and the remaining distance is the sampler's error.
    points, _ = mixture_2d(1000 if quick else 2000, np.random.default_rng(0), std=0.1)
    rows = []
    for D in (128.0, math.inf):
        denoise = pfgmpp_denoiser(points, D)
        for nfe in (5, 9, 17) if quick else (5, 9, 17, 35, 69):
            x = torch.from_numpy(pfgmpp.prior(len(points), 2, D, 80.0, np.random.default_rng(2)))
            heun = heun_sample(denoise, x, edm_sigmas((nfe + 1) // 2)).numpy()
            euler = heun_sample(denoise, x, edm_sigmas(nfe), heun=False).numpy()
            rows.append(
                {
                    "D": D,
                    "nfe": nfe,
                    "heun_swd": sliced_wasserstein(heun, points),
                    "euler_swd": sliced_wasserstein(euler, points),
                }
            )
    return {"rows": rows}


def run(quick: bool = False, device: str = "cpu") -> dict:
    on_gpu = device.startswith("cuda")
    return {
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "image": IMAGE,
        "unet_base": BASE,
        "training": _training_steps(device, quick),
        "sampling": _sampling(device, quick),
        "quality": _quality_vs_nfe(quick),
    }


def format_result(r: dict) -> str:
    t, s, q = r["training"], r["sampling"], r["quality"]
    lines = [
        f"generative models on {r['device']} (torch {r['torch']}, {r['threads']} threads); "
        f"UNet base {r['unet_base']} on {r['image']}x{r['image']}",
        f"training steps/s (batch {t['batch']}, median of {t['rounds']} interleaved rounds): "
        + ", ".join(f"{k} {v:.2f}" for k, v in t["steps_per_s"].items()),
        f"  PFGM++ (D=128) extra cost per training step over EDM: {100 * t['pfgmpp_over_edm']:+.1f} % (goal <= 5 %)",
        f"sampling samples/s at NFE {s['nfe']} ({s['count']} samples): "
        + ", ".join(f"{k} {v:.1f}" for k, v in s["samples_per_s"].items()),
        f"  PFGM++ (D=128) extra cost per sample over EDM, Heun: {100 * s['pfgmpp_over_edm']:+.1f} % (goal <= 5 %)",
        "quality vs NFE, exact denoiser of an 8-mode 2-D mixture (sliced W1 of samples to its points):",
        f"{'D':>8}{'NFE':>6}{'Heun':>10}{'Euler':>10}",
    ]
    for row in q["rows"]:
        name = "inf" if math.isinf(row["D"]) else f"{row['D']:g}"
        lines.append(f"{name:>8}{row['nfe']:>6}{row['heun_swd']:>10.4f}{row['euler_swd']:>10.4f}")
    return "\n".join(lines)
