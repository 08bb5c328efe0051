"""ONNX Runtime engine: CPU by default, CUDA execution provider when installed and asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ranksam_ros.backends.base import BOX_LABELS, Encoded, ModelInfo
from ranksam_ros.deploy.manifest import read_manifest

INSTALL_HINT = "ONNX Runtime is not installed: pip install 'ranksam_ros[onnx]' (or onnxruntime-gpu)"


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return onnxruntime


class OnnxBackend:
    """Run an export directory (``ranksam export`` output) with ONNX Runtime.

    Args:
        export_dir: Directory holding ``manifest.json`` and the graphs (hashes are verified).
        threads: Intra-op threads (0 = ONNX Runtime's default).
        int8: Use the quantised encoder (only if the export accepted it).
        device: ``cpu`` or ``cuda`` (CUDA execution provider).
    """

    def __init__(
        self, export_dir: str | Path, threads: int = 0, int8: bool = False, device: str = "cpu"
    ) -> None:
        ort = _import_ort()
        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        graphs = self.manifest["graphs"]
        if int8 and "encoder_int8" not in graphs:
            raise ValueError(
                f"{self.export_dir}: no accepted int8 encoder (export with --precision int8)"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ImportError("CUDA execution provider missing: pip install onnxruntime-gpu")
            providers.insert(0, "CUDAExecutionProvider")
        self.sessions = {}
        for name in ("encoder", "prompt_predictor", "decoder"):
            key = "encoder_int8" if (name == "encoder" and int8) else name
            if key in graphs:
                path = str(self.export_dir / graphs[key]["file"])
                self.sessions[name] = ort.InferenceSession(path, options, providers=providers)
        m = self.manifest
        self.layer_names = list(m.get("gated_layers", []))
        suffix = "+int8" if int8 else ""
        self.info = ModelInfo(
            model_id=f"{m['model_id']}@onnxruntime{suffix}",
            input_size=int(m["input_size"]),
            pixel_mean=tuple(m["pixel_mean"]),
            pixel_std=tuple(m["pixel_std"]),
            mask_size=int(m["mask_size"]),
            class_names=tuple(m["class_names"]),
        )
        self._check_shape = (1, 3, self.info.input_size, self.info.input_size)

    @classmethod
    def from_model(cls, model: str, adapter: str | None = "none", threads: int = 0) -> OnnxBackend:
        """An export directory, or a model name exported on the fly into a cache directory."""
        if (Path(model) / "manifest.json").is_file():
            return cls(model, threads=threads)
        from ranksam_ros.deploy.cache import cached_export

        return cls(cached_export(model, adapter), threads=threads)

    def encode(self, image: np.ndarray) -> Encoded:
        if image.shape != self._check_shape or image.dtype != np.float32:
            raise ValueError(
                f"encoder input must be float32 {self._check_shape}, got {image.dtype} {image.shape}"
            )
        embedding, ranks = self.sessions["encoder"].run(None, {"image": image})
        if not self.layer_names:
            return Encoded(embedding)
        layer_ranks = {name: float(r) for name, r in zip(self.layer_names, ranks[0])}
        return Encoded(embedding, float(np.mean(ranks)), layer_ranks)

    def predict_prompts(self, encoded: Encoded, image: np.ndarray) -> np.ndarray:
        if "prompt_predictor" not in self.sessions:
            raise RuntimeError(f"export {self.export_dir} has no prompt predictor")
        (maps,) = self.sessions["prompt_predictor"].run(
            None, {"embedding": encoded.embedding, "image": image}
        )
        return maps[0]

    def decode(
        self, encoded: Encoded, coords: np.ndarray, labels: np.ndarray, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        coords = np.asarray(coords, np.float32)
        labels = np.asarray(labels, np.float32)
        if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
            raise ValueError(
                f"prompts must be (N, P, 2) with labels (N, P), got {coords.shape}, {labels.shape}"
            )
        is_box = labels.shape[1] == 2 and np.all(labels == np.asarray(BOX_LABELS, np.float32))
        if not is_box:
            # SAM's prompt encoder appends one padding point to point-only prompts.
            coords = np.concatenate([coords, np.zeros((len(coords), 1, 2), np.float32)], axis=1)
            labels = np.concatenate([labels, -np.ones((len(labels), 1), np.float32)], axis=1)
        feeds = {"embedding": encoded.embedding, "point_coords": coords, "point_labels": labels}
        masks, iou = self.sessions["decoder"].run(None, feeds)
        tokens = slice(1, None) if multimask else slice(0, 1)
        return masks[:, tokens], iou[:, tokens]
