"""Synthetic camera degradations with five severities, deterministic given a random generator.

Four are used for adapter training (noise, blur, lowlight, fog); motion blur is kept out of
training to test generalisation to an unseen corruption. Severities 1-3 are the training and
standard evaluation range; 4 and 5 extend each one beyond it (heavier than anything seen in
training) to test how the adapters extrapolate.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ranksam_ros.config import DEGRADATIONS, SEVERITIES, TRAIN_DEGRADATIONS, TRAIN_SEVERITIES

NOISE_SIGMA = {1: 0.04, 2: 0.08, 3: 0.12, 4: 0.16, 5: 0.20}
BLUR_SIGMA = {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0, 5: 5.0}
# (gamma, gain)
LOWLIGHT = {1: (2.0, 0.5), 2: (2.5, 0.4), 3: (3.0, 0.3), 4: (3.5, 0.22), 5: (4.0, 0.15)}
FOG_NEAR_TRANSMISSION = {1: 0.6, 2: 0.45, 3: 0.3, 4: 0.22, 5: 0.15}
FOG_AIRLIGHT = 0.8
MOTION_LENGTH = {1: 9, 2: 15, 3: 21, 4: 27, 5: 33}


def _noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0.0, NOISE_SIGMA[severity], x.shape)


def _blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = BLUR_SIGMA[severity]
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0))


def _lowlight(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    gamma, gain = LOWLIGHT[severity]
    dark = gain * np.power(x, gamma)
    # Shot noise grows with the signal; read noise is a floor.
    shot = rng.normal(0.0, 1.0, x.shape) * np.sqrt(np.maximum(dark, 0.0) * 0.01 + 1e-4)
    return dark + shot


def _fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    height = x.shape[0]
    # Pseudo depth: the top rows are far (thick fog), the bottom rows near.
    near = FOG_NEAR_TRANSMISSION[severity]
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    transmission = 0.1 + (near - 0.1) * rows
    return x * transmission + FOG_AIRLIGHT * (1.0 - transmission)


def _motion(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    length = MOTION_LENGTH[severity]
    angle = rng.uniform(0.0, np.pi)
    kernel = np.zeros((length, length))
    centre = (length - 1) / 2
    for t in np.linspace(-centre, centre, 4 * length):
        kernel[int(round(centre + t * np.sin(angle))), int(round(centre + t * np.cos(angle)))] = 1
    kernel /= kernel.sum()
    return np.stack([ndimage.convolve(x[..., c], kernel, mode="nearest") for c in range(3)], -1)


_KINDS = {"noise": _noise, "blur": _blur, "lowlight": _lowlight, "fog": _fog, "motion": _motion}


def degrade(image: np.ndarray, kind: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Apply one degradation.

    Args:
        image: RGB uint8 ``(H, W, 3)``.
        kind: One of ``noise``, ``blur``, ``lowlight``, ``fog``, ``motion``.
        severity: 1 to 5 (1-3: the training range).
        rng: Source of randomness (noise samples, motion direction).

    Returns:
        Degraded RGB uint8 ``(H, W, 3)``.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {', '.join(DEGRADATIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    x = image.astype(np.float64) / 255.0
    y = _KINDS[kind](x, severity, rng)
    return (np.clip(y, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def eval_degradation(
    image: np.ndarray,
    mode: str,
    seed: int,
    index: int,
    severities: tuple[int, ...] = TRAIN_SEVERITIES,
) -> tuple[np.ndarray, str, int]:
    """Deterministic degradation for evaluation frame ``index``.

    ``mode`` is ``none``, one degradation name (severity cycles through ``severities`` over
    frames) or ``mixed`` (a training degradation and one of ``severities`` drawn per frame).

    Returns:
        ``(image, kind, severity)``; kind ``none`` and severity 0 for clean frames.
    """
    if mode == "none":
        return image, "none", 0
    if not severities:
        raise ValueError("severities: give at least one of " + ", ".join(map(str, SEVERITIES)))
    rng = np.random.default_rng([seed, index])
    if mode == "mixed":
        kind = TRAIN_DEGRADATIONS[int(rng.integers(len(TRAIN_DEGRADATIONS)))]
        severity = severities[int(rng.integers(len(severities)))]
    elif mode in _KINDS:
        kind, severity = mode, severities[index % len(severities)]
    else:
        raise ValueError(f"--degrade {mode!r}: choose none, mixed or one of {', '.join(_KINDS)}")
    return degrade(image, kind, severity, rng), kind, severity
