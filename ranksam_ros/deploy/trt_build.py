"""TensorRT engines for an export: shape profiles, cache keys, the build policy.

Engines are specific to the ONNX file, the TensorRT release, the GPU (compute capability), the
precision and the shape profile, so all five go into the cache key and an engine is only ever
reused for an identical combination.  Nothing here imports TensorRT (testable anywhere); the
API calls live in :mod:`ranksam_ros.deploy.trt_engine` and are reached only to build or to
detect the running TensorRT and GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx

from ranksam_ros.config import ENGINE_PRECISIONS
from ranksam_ros.deploy.cache import cache_root
from ranksam_ros.deploy.trt_check import TRT_GRAPHS
from ranksam_ros.deploy.trt_engine import Profile, Shape, runtime_identity
from ranksam_ros.graph.manifest import sha256_file

log = logging.getLogger("ranksam_ros.tensorrt")

POLICIES = ("if_missing", "never", "always")
# Bump when builder settings or the fp32-layer selection change: old engines must not match.
BUILD_RECIPE = 1
DEFAULT_PROMPTS = (1, 16, 128)  # decoder prompt batch: min, opt, max
DEFAULT_POINTS = (1, 2, 8)  # points per prompt (incl. SAM's padding point): min, opt, max

Builder = Callable[[Path, str, Profile], bytes]


class EngineNotFoundError(FileNotFoundError):
    """No cached engine for the requested key and the policy forbids building one."""


@dataclass(frozen=True)
class EngineRecord:
    """Where an engine lives and whether this call built it."""

    graph: str
    path: Path
    key: str
    built: bool
    seconds: float | None = None


def default_cache_dir() -> Path:
    """``$RANKSAM_CACHE/engines`` or ``~/.cache/ranksam_ros/engines``."""
    return cache_root() / "engines"


def graph_profile(model: onnx.ModelProto, dynamic_axes: dict, sizes: dict[str, Shape]) -> Profile:
    """Min/opt/max shape of every graph input.

    Args:
        model: The ONNX graph.
        dynamic_axes: Manifest ``{io name: {axis: dim name}}``.
        sizes: ``{dim name: (min, opt, max)}`` for every declared dynamic dim name.

    Raises:
        ValueError: an undeclared symbolic dim, a dim name without sizes, or bad sizes.
    """
    profile: Profile = {}
    for value in model.graph.input:
        axes = {int(a): n for a, n in dynamic_axes.get(value.name, {}).items()}
        lo, opt, hi = [], [], []
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and axis not in axes:
                triple = (dim.dim_value,) * 3
            elif axis in axes and axes[axis] in sizes:
                triple = tuple(int(v) for v in sizes[axes[axis]])
                if not 1 <= triple[0] <= triple[1] <= triple[2]:
                    raise ValueError(f"{axes[axis]} sizes {triple}: need 1 <= min <= opt <= max")
            else:
                raise ValueError(
                    f"input {value.name!r} axis {axis} is dynamic without a size range "
                    "(run `ranksam trt-check`)"
                )
            for seq, v in zip((lo, opt, hi), triple):
                seq.append(v)
        profile[value.name] = (tuple(lo), tuple(opt), tuple(hi))
    return profile


def decoder_sizes(
    max_prompts: int = DEFAULT_PROMPTS[2],
    opt_prompts: int = DEFAULT_PROMPTS[1],
    points: Shape = DEFAULT_POINTS,
) -> dict[str, Shape]:
    """Size ranges of the decoder's ``prompts`` and ``points`` axes."""
    return {"prompts": (1, min(opt_prompts, max_prompts), max_prompts), "points": tuple(points)}


def export_profiles(
    export_dir: str | Path, manifest: dict, sizes: dict[str, Shape]
) -> dict[str, Profile]:
    """Profiles of the TensorRT graphs of an export (int8 ORT graph excluded)."""
    profiles = {}
    for name, entry in manifest["graphs"].items():
        if name in TRT_GRAPHS:
            model = onnx.load(str(Path(export_dir) / entry["file"]), load_external_data=False)
            profiles[name] = graph_profile(model, entry.get("dynamic_axes", {}), sizes)
    return profiles


def _profile_json(profile: Profile) -> dict[str, list[list[int]]]:
    return {name: [list(s) for s in shapes] for name, shapes in sorted(profile.items())}


def engine_cache_key(
    onnx_path: str | Path,
    trt_version: str,
    compute_capability: str,
    precision: str,
    profile: Profile,
) -> str:
    """Hex SHA-256 identifying an engine.

    Hashes the ONNX file's SHA-256, the TensorRT version, the GPU compute capability (e.g.
    ``"8.7"``), the precision, the shape profile and :data:`BUILD_RECIPE`.
    """
    payload = key_ingredients(onnx_path, trt_version, compute_capability, precision, profile)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def key_ingredients(
    onnx_path: str | Path,
    trt_version: str,
    compute_capability: str,
    precision: str,
    profile: Profile,
) -> dict:
    """What an engine depends on (hashed into its key, written into its sidecar)."""
    return {
        "onnx_sha256": sha256_file(onnx_path),
        "tensorrt": str(trt_version),
        "compute_capability": str(compute_capability),
        "precision": precision,
        "profile": _profile_json(profile),
        "recipe": BUILD_RECIPE,
    }


def engine_path(cache_dir: str | Path, graph: str, key: str) -> Path:
    """``<cache_dir>/<graph>-<key[:16]>.engine`` (sidecar: same stem, ``.json``)."""
    return Path(cache_dir) / f"{graph}-{key[:16]}.engine"


def _cached(path: Path, key: str) -> bool:
    sidecar = path.with_suffix(".json")
    if not (path.is_file() and sidecar.is_file()):
        return False
    try:
        return json.loads(sidecar.read_text()).get("key") == key
    except json.JSONDecodeError:
        return False


def _write_engine(path: Path, data: bytes, sidecar: dict) -> None:
    """Write engine then sidecar atomically: a crashed build never leaves a matching pair."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, payload in (
        (path, data),
        (path.with_suffix(".json"), json.dumps(sidecar, indent=2).encode()),
    ):
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, target)


def build_engine(
    onnx_path: str | Path,
    precision: str,
    profile: Profile,
    cache_dir: str | Path | None = None,
    policy: str = "if_missing",
    *,
    graph: str | None = None,
    trt_version: str | None = None,
    compute_capability: str | None = None,
    builder: Builder | None = None,
) -> EngineRecord:
    """Return the cached engine for this key, building it if the policy allows.

    Args:
        onnx_path: Graph file.
        precision: ``fp16`` (LayerNorm and gate branches kept fp32) or ``fp32``.
        profile: Min/opt/max shape per input (see :func:`graph_profile`).
        cache_dir: Engine directory (default :func:`default_cache_dir`).
        policy: ``if_missing`` (build when absent, logged with its duration), ``never``
            (absent -> :class:`EngineNotFoundError`) or ``always`` (rebuild, logged).
        graph: Name used in the file name (default: the ONNX file stem).
        trt_version: Key ingredient; detected from the installed TensorRT when omitted.
        compute_capability: Key ingredient (``"8.7"``); detected from the GPU when omitted.
        builder: ``(onnx_path, precision, profile) -> engine bytes``; default
            :func:`ranksam_ros.deploy.trt_engine.serialize_engine`.

    Raises:
        ValueError: unknown precision/policy.
        EngineNotFoundError: policy ``never`` and no matching engine.
    """
    if precision not in ENGINE_PRECISIONS or policy not in POLICIES:
        raise ValueError(
            f"precision {precision!r} / policy {policy!r}: use {ENGINE_PRECISIONS} / {POLICIES}"
        )
    onnx_path = Path(onnx_path)
    graph = graph or onnx_path.stem
    if trt_version is None or compute_capability is None:
        detected = runtime_identity()
        trt_version, compute_capability = (
            trt_version or detected[0],
            compute_capability or detected[1],
        )
    key = engine_cache_key(onnx_path, trt_version, compute_capability, precision, profile)
    path = engine_path(cache_dir or default_cache_dir(), graph, key)
    what = f"{graph} ({precision}, TensorRT {trt_version}, sm {compute_capability}, key {key[:16]})"
    if policy != "always" and _cached(path, key):
        return EngineRecord(graph, path, key, built=False)
    if policy == "never":
        raise EngineNotFoundError(
            f"no TensorRT engine for {what} in {path.parent}; build it on this machine with "
            f"`ranksam build-engine --export {onnx_path.parent} --precision {precision} "
            f"--cache {path.parent}` (engine build policy is 'never')"
        )
    reason = "policy 'always'" if policy == "always" else "no cached engine"
    log.warning("building TensorRT engine for %s: %s; this can take minutes", what, reason)
    start = time.perf_counter()
    if builder is None:
        from ranksam_ros.deploy.trt_engine import serialize_engine as builder
    data = builder(onnx_path, precision, profile)
    seconds = time.perf_counter() - start
    sidecar = {
        "graph": graph,
        "key": key,
        "onnx": onnx_path.name,
        **key_ingredients(onnx_path, trt_version, compute_capability, precision, profile),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(seconds, 1),
    }
    _write_engine(path, data, sidecar)
    log.warning("built TensorRT engine for %s in %.1f s: %s", what, seconds, path)
    return EngineRecord(graph, path, key, built=True, seconds=seconds)


def build_export_engines(
    export_dir: str | Path,
    precision: str = "fp16",
    cache_dir: str | Path | None = None,
    policy: str = "if_missing",
    sizes: dict[str, Shape] | None = None,
    **options,
) -> dict[str, EngineRecord]:
    """Engines for every TensorRT graph of an export (see :func:`build_engine`).

    Args:
        export_dir: ``ranksam export`` output (hashes verified).
        precision: As in :func:`build_engine`.
        cache_dir: As in :func:`build_engine`.
        policy: As in :func:`build_engine`.
        sizes: Dynamic dim ranges (default :func:`decoder_sizes`).
        **options: ``trt_version``, ``compute_capability``, ``builder`` for
            :func:`build_engine`.
    """
    from ranksam_ros.graph.manifest import read_manifest

    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    profiles = export_profiles(export_dir, manifest, sizes or decoder_sizes())
    return {
        name: build_engine(
            export_dir / manifest["graphs"][name]["file"],
            precision,
            profile,
            cache_dir,
            policy,
            graph=name,
            **options,
        )
        for name, profile in profiles.items()
    }
