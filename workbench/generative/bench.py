"""`workbench bench diffusion`: speed and quality-per-NFE of the generative pieces, side by side in one process.

- **Training steps/s** of the small UNet (16×16, base 32, batch 64) for the discrete-time loss (v-prediction)
  and the PFGM++ loss at D = 128 vs D = ∞ (EDM). The two PFGM++ arms alternate in rounds; their median
  time ratio is PFGM++'s extra cost over EDM per step (goal ≤ 5 %: only the noise draw differs).
- **Sampling samples/s** of the same UNet under Heun and Euler (σ-space, PFGM++ D = 128 and EDM),
  DDIM and DDPM at equal NFE, with the PFGM++/EDM Heun ratio (only the prior draw differs).
- **Quality against NFE**, Heun vs Euler, with the exact denoiser of an 8-mode 2-D mixture (no training,
  so the numbers are the sampler's alone): sliced W1 of 2,000 samples to the 2,000 points.

`gpu_stage` is the generative stage of `workbench bench gpu` (workbench/bench_gpu.py): the same
training and Heun sampling measurements for PFGM++ (D = 128) and EDM at CIFAR-10's shape
(3 × 32 × 32) with a base-128 UNet, bf16 autocast, Heun at NFE 35, within its time budget.
"""

from __future__ import annotations

import dataclasses
import gc
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


def _rounds(fns: dict, rounds: int, repeats: int, sync, deadline: float | None = None) -> dict[str, list[float]]:
    """Seconds per call of each function, `rounds` times in turn (machine noise hits all alike).

    With a `deadline` (time.monotonic()) a round starts only if the last one would still fit; the
    first always runs.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for index in range(rounds):
        if (
            deadline is not None
            and index
            and time.monotonic() + repeats * sum(t[-1] for t in times.values()) > deadline
        ):
            break
        for name, fn in fns.items():
            times[name].append(_timed(fn, repeats, sync))
    return times


TRAIN_ARMS = ("pfgmpp_D128", "edm", "v_prediction")


def _training_steps(
    device: str,
    quick: bool,
    *,
    image: int = IMAGE,
    channels: int = 1,
    base: int = BASE,
    batch: int | None = None,
    arms: tuple[str, ...] = TRAIN_ARMS,
    plan: tuple[int, int] | None = None,
    deadline: float | None = None,
) -> dict:
    on_gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    batch = batch or (256 if on_gpu else BATCH)
    x = torch.randn(batch, channels, image, image, generator=torch.Generator().manual_seed(0)).to(device)
    alpha_bar = schedules.alphas_cumprod(schedules.rescale_zero_terminal_snr(schedules.make_betas()))
    steps: dict = {}
    for arm in arms:
        torch.manual_seed(0)
        net = UNetDenoiser(channels, base).to(device)
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
    rounds, repeats = plan or ((3, 2) if quick else (7, 5))
    times = _rounds(steps, rounds, repeats, sync, deadline)
    ratio = statistics.median(a / b for a, b in zip(times["pfgmpp_D128"], times["edm"]))
    return {
        "batch": batch,
        "steps_per_s": {arm: 1 / statistics.median(t) for arm, t in times.items()},
        "pfgmpp_over_edm": ratio - 1,
        "rounds": len(times["edm"]),
        "repeats": repeats,
    }


SAMPLE_ARMS = ("heun_pfgmpp_D128", "heun_edm", "euler_edm", "ddim", "ddpm")


def _sampling(
    device: str,
    quick: bool,
    *,
    image: int = IMAGE,
    channels: int = 1,
    base: int = BASE,
    count: int | None = None,
    heun_steps: int | None = None,
    arms: tuple[str, ...] = SAMPLE_ARMS,
    rounds: int | None = None,
    deadline: float | None = None,
) -> dict:
    on_gpu = device.startswith("cuda")
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    count = count or (1024 if on_gpu else (64 if quick else 256))
    torch.manual_seed(0)
    net = UNetDenoiser(channels, base).to(device).eval()
    precond = EDMPrecond(net)
    shape = (count, channels, image, image)

    def denoise(x, sigma):
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=on_gpu):
            return precond(x.float(), sigma.float()).double()

    def model(x, t):
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=on_gpu):
            return net(x.float(), timestep_condition(t, 1000)).double()

    alpha_bar = schedules.alphas_cumprod(schedules.rescale_zero_terminal_snr(schedules.make_betas()))
    heun_steps = heun_steps or (5 if quick else 9)  # NFE 2n − 1 = 9 or 17
    nfe = 2 * heun_steps - 1
    rng = np.random.default_rng(0)

    def prior(D):
        return torch.from_numpy(pfgmpp.prior(count, math.prod(shape[1:]), D, 80.0, rng)).reshape(shape).to(device)

    def discrete(sampler):  # DDIM / DDPM with a v-prediction model over the trailing timesteps
        noise = torch.randn(shape, dtype=torch.float64, device=device)
        return sampler(model, noise, alpha_bar, schedules.timesteps("trailing", 1000, nfe), "v_prediction")

    runs = {
        name: fn
        for name, fn in {
            "heun_pfgmpp_D128": lambda: heun_sample(denoise, prior(128.0), edm_sigmas(heun_steps)),
            "heun_edm": lambda: heun_sample(denoise, prior(math.inf), edm_sigmas(heun_steps)),
            "euler_edm": lambda: heun_sample(denoise, prior(math.inf), edm_sigmas(nfe), heun=False),
            "ddim": lambda: discrete(ddim_sample),
            "ddpm": lambda: discrete(ddpm_sample),
        }.items()
        if name in arms
    }
    for fn in runs.values():
        fn()
    times = _rounds(runs, rounds or (2 if quick else 5), 1, sync, deadline)
    ratio = statistics.median(a / b for a, b in zip(times["heun_pfgmpp_D128"], times["heun_edm"]))
    return {
        "count": count,
        "nfe": nfe,
        "samples_per_s": {a: count / statistics.median(t) for a, t in times.items()},
        "pfgmpp_over_edm": ratio - 1,
        "rounds": len(times["heun_edm"]),
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


# --------------------------------------------------------------------------------------------
# `workbench bench gpu`: the generative stage
# --------------------------------------------------------------------------------------------

HEUN_STEPS = 18  # NFE 2·18 − 1 = 35: EDM's deterministic CIFAR-10 sampler (Karras et al. 2022)
# PFGM++ trains and samples with EDM's network and ODE; only the noise and the prior differ
# (Xu et al. 2023), so its cost over EDM should be small.
EXTRA_GOAL = 0.05
D_PFGMPP = 128.0  # one of the finite D that Xu et al. 2023 train on CIFAR-10


@dataclasses.dataclass(frozen=True)
class StageSize:
    image: int
    channels: int
    base: int  # UNet base channels
    batch: int  # training
    count: int  # images per sampling run
    train_plan: tuple[int, int]  # (rounds, steps per round)
    sample_rounds: int


# CIFAR-10's shape (3 × 32 × 32, EDM's and PFGM++'s benchmark set); base 128 (4.7 M parameters) so
# the GPU has convolutions to do; a batch of 256 and 1,024 images per sampling run.
GPU_STAGE = StageSize(32, 3, 128, 256, 1024, (9, 10), 5)
GPU_STAGE_QUICK = StageSize(32, 3, 32, 64, 256, (3, 5), 2)
CPU_STAGE = StageSize(32, 3, 16, 16, 16, (5, 2), 3)
CPU_STAGE_QUICK = StageSize(32, 3, 8, 8, 8, (3, 2), 2)


def _noise_draw_ms(batch: int, N: int, rounds: int = 5) -> dict[str, float]:
    """Milliseconds of one training batch's noise draw (numpy, on the host), PFGM++ and EDM in turn:
    the part of a step where the two differ (a Beta draw and a normalisation more for PFGM++)."""
    rng = np.random.default_rng(0)
    draws = {
        arm: (lambda D=D: pfgmpp_noise(rng, batch, N, D)) for arm, D in (("pfgmpp_D128", D_PFGMPP), ("edm", math.inf))
    }
    times = _rounds(draws, rounds, 1, lambda: None)
    return {arm: 1e3 * statistics.median(t) for arm, t in times.items()}


def _stage_rows(training: dict | None, sampling: dict | None, size: StageSize, reasons: dict) -> list[dict]:
    goal = f"<= {100 * EXTRA_GOAL:g} %"

    def row(measure, value, unit, goal=None, met=None):
        return {"measure": measure, "value": value, "unit": unit, "goal": goal, "met": met}

    rows = []
    shape = f"{size.channels}x{size.image}x{size.image}"
    names = (("pfgmpp_D128", f"PFGM++ D={D_PFGMPP:g}"), ("edm", "EDM (D=inf)"))
    for arm, label in names:
        value = training["steps_per_s"][arm] if training else None
        unit = f"steps/s, batch {size.batch}, {shape}" if training else reasons["training"]
        rows.append(row(f"train steps/s {label}", value, unit))
    extra = training["pfgmpp_over_edm"] if training else None
    rows.append(row("PFGM++ extra cost, training", None if extra is None else 100 * extra,
                    "% per step" if training else reasons["training"], goal,
                    None if extra is None else extra <= EXTRA_GOAL))  # fmt: skip
    for arm, label in names:
        value = sampling["samples_per_s"][f"heun_{arm}"] if sampling else None
        unit = f"images/s, Heun NFE {sampling['nfe']}, {sampling['count']} images" if sampling else reasons["sampling"]
        rows.append(row(f"sampling images/s {label}", value, unit))
    extra = sampling["pfgmpp_over_edm"] if sampling else None
    rows.append(row("PFGM++ extra cost, sampling", None if extra is None else 100 * extra,
                    "% per image" if sampling else reasons["sampling"], goal,
                    None if extra is None else extra <= EXTRA_GOAL))  # fmt: skip
    return rows


def gpu_stage(device: str = "cuda", quick: bool = False, budget_s: float = 60.0) -> dict:
    """The generative stage of `workbench bench gpu`: PFGM++ (D = 128) and EDM (D = inf) with the
    UNet on 3 × 32 × 32 images, bf16 autocast on a GPU.

    - training steps/s (EDM preconditioning and loss, Karras et al. 2022; PFGM++ noise, Xu et al.
      2023), the two alternating in rounds, so the median ratio is PFGM++'s extra cost per step
      (goal <= 5 %); the host-side noise draw, where the two differ, is timed alone too;
    - Heun sampling images/s at NFE 35, the same way.

    Training has up to half the budget; sampling stops starting rounds when the rest is spent. The
    network is untrained: speed does not depend on the weights. On a CPU (`--quick`) a base-8 UNet
    and 8 images run the same code.
    """
    threads = torch.get_num_threads()
    if quick and not device.startswith("cuda"):
        # A base-8 UNet on 8 images: a second thread's fork/join per op costs more than it saves.
        torch.set_num_threads(1)
    try:
        return _generative_stage(device, quick, budget_s)
    finally:
        torch.set_num_threads(threads)


def _generative_stage(device: str, quick: bool, budget_s: float) -> dict:
    start = time.monotonic()
    end = start + budget_s - min(5.0, 0.1 * budget_s)  # leave time to write the result and free the device
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        size = GPU_STAGE_QUICK if quick else GPU_STAGE
    else:
        size = CPU_STAGE_QUICK if quick else CPU_STAGE
    common = {"image": size.image, "channels": size.channels, "base": size.base}
    training = sampling = None
    reasons = {"training": "not measured", "sampling": "not measured"}
    try:
        training = _training_steps(
            device,
            quick,
            **common,
            batch=size.batch,
            arms=("pfgmpp_D128", "edm"),
            plan=size.train_plan,
            deadline=start + 0.5 * (end - start),
        )
    except torch.cuda.OutOfMemoryError as error:
        reasons["training"] = f"out of memory: {str(error).splitlines()[0][:120]}"
    _free(device)
    noise_ms = _noise_draw_ms(size.batch, size.channels * size.image**2)
    if time.monotonic() >= end:
        reasons["sampling"] = "time budget spent"
    else:
        try:
            sampling = _sampling(
                device,
                quick,
                **common,
                count=size.count,
                heun_steps=HEUN_STEPS,
                arms=("heun_pfgmpp_D128", "heun_edm"),
                rounds=size.sample_rounds,
                deadline=end,
            )
        except torch.cuda.OutOfMemoryError as error:
            reasons["sampling"] = f"out of memory: {str(error).splitlines()[0][:120]}"
        _free(device)
    details = {
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "size": dataclasses.asdict(size),
        "unet_params": sum(p.numel() for p in UNetDenoiser(size.channels, size.base).parameters()),
        "bf16_autocast": on_gpu,
        "D": D_PFGMPP,
        "training": training,
        "sampling": sampling,
        "noise_draw_ms": noise_ms,
        "noise_draw_note": "host-side numpy draw of one training batch's sigma and noise (losses.pfgmpp_noise), "
        "part of every timed step; PFGM++ adds a Beta draw and a normalisation over EDM's Gaussian",
        "reasons": reasons,
        "seconds": time.monotonic() - start,
    }
    return {"rows": _stage_rows(training, sampling, size, reasons), "details": details, "skipped": None}


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
