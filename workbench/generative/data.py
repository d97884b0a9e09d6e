"""Offline data for the generative experiments: nothing is downloaded (only data shipped in wheels).

- `mixture_2d`: Gaussian mixtures in the plane (vectors);
- `digits`: scikit-learn's bundled 8×8 digits in [−1, 1], optionally upsampled;
- `brightness_images`: textures on a per-image brightness offset b ~ U(−0.8, 0.8), so the mean
  brightness spans almost the whole [−1, 1] range (a toy of Lin et al. 2024's brightness failure);
- `load_images`: a user's folder of images or a `.npy` array, checked for consistent sizes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from workbench.errors import InputError

__all__ = ["brightness_images", "digits", "load_images", "mixture_2d", "training_data"]


def mixture_2d(
    count: int, rng: np.random.Generator, *, modes: int = 8, radius: float = 2.0, std: float = 0.1, weights=None
) -> tuple[np.ndarray, np.ndarray]:
    """`count` points from `modes` Gaussians on a circle; returns (points (count, 2), mode index)."""
    if modes < 1 or std <= 0:
        raise InputError("a 2-D mixture needs modes >= 1 and std > 0")
    w = np.full(modes, 1.0 / modes) if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    labels = rng.choice(modes, size=count, p=w)
    angles = 2 * np.pi * np.arange(modes) / modes
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centres[labels] + std * rng.standard_normal((count, 2)), labels


def digits(size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as (n, 1, size, size) float32 in [−1, 1], and their labels.
    `size` a multiple of 8 upsamples by bilinear interpolation."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 8.0 - 1.0  # 0..16 → −1..1
    if size != 8:
        if size % 8:
            raise InputError(f"digits size must be a multiple of 8, got {size}")
        import torch

        images = torch.nn.functional.interpolate(
            torch.from_numpy(images)[:, None], size=(size, size), mode="bilinear", align_corners=False
        )[:, 0].numpy()
    return images[:, None], bunch.target.astype(np.int64)


def brightness_images(
    count: int, size: int, rng: np.random.Generator, *, texture: float = 0.15, max_offset: float = 0.8
) -> np.ndarray:
    """The brightness set: texture·N(0, 1) + b, b ~ U(−max_offset, max_offset) per image, clipped to [−1, 1];
    (count, 1, size, size) float32."""
    offsets = rng.uniform(-max_offset, max_offset, size=(count, 1, 1, 1))
    images = texture * rng.standard_normal((count, 1, size, size)) + offsets
    return np.clip(images, -1.0, 1.0).astype(np.float32)


def load_images(path: str | os.PathLike[str]) -> np.ndarray:
    """A user's images as (n, channels, H, W) float32 in [−1, 1]: a `.npy` array (n, H, W) or
    (n, C, H, W) already in [−1, 1], or a folder of PNG/JPEG files that must all share one size."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such image folder or .npy file")
    if path.is_file():
        if path.suffix != ".npy":
            raise InputError(f"{path}: expected a .npy array or a folder of images")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as reason:
            raise InputError(f"{path}: not a readable .npy array ({reason})") from None
        if array.ndim == 3:
            array = array[:, None]
        if array.ndim != 4 or not np.issubdtype(array.dtype, np.number):
            raise InputError(
                f"{path}: expected a numeric array of shape (n, H, W) or (n, C, H, W), got {array.dtype} {array.shape}"
            )
        if not np.all(np.isfinite(array)) or array.min() < -1 or array.max() > 1:
            raise InputError(f"{path}: values must be finite and in [-1, 1]")
        return array.astype(np.float32)
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise InputError(f"{path}: the folder holds no .png or .jpg images")
    images, first = [], None
    for file in files:
        try:
            with Image.open(file) as image:
                array = np.asarray(image.convert("L" if image.mode in ("L", "1", "P") else "RGB"), dtype=np.float32)
        except OSError as reason:
            raise InputError(f"{file}: not a readable image ({reason})") from None
        if first is None:
            first = (file, array.shape)
        elif array.shape != first[1]:
            raise InputError(
                f"{path}: images have mixed sizes: {first[0].name} is {_shape(first[1])} but "
                f"{file.name} is {_shape(array.shape)}; resize them to one size"
            )
        images.append(array)
    stacked = np.stack(images) / 127.5 - 1.0
    stacked = stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)
    return stacked.astype(np.float32)


def _shape(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}" + (f"x{shape[2]}" if len(shape) == 3 else "")


def training_data(config) -> tuple[np.ndarray, np.ndarray | None]:
    """(data float32 (n, ...), labels or None) that a `pfgmpp` / `diffusion` config names
    (workbench.generative.config)."""
    rng = np.random.default_rng(config.data_seed)
    if config.data == "mixture2d":
        points, _ = mixture_2d(config.n_data, rng)
        return points.astype(np.float32), None
    if config.data == "digits":
        return digits(config.image_size)
    if config.data == "brightness":
        return brightness_images(config.n_data, config.image_size, rng), None
    return load_images(config.data_path), None
