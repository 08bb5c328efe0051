"""ONNX Runtime engine: CPU by default, CUDA execution provider when installed and asked for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ranksam_ros.backends.base import single_threaded_numpy
from ranksam_ros.deploy.cache import resolve_export
from ranksam_ros.deploy.quantize import parity_summary
from ranksam_ros.graph import feeds as graph_feeds
from ranksam_ros.graph import names
from ranksam_ros.graph.manifest import read_manifest
from ranksam_ros.graph.prompts import decoder_prompts, select_masks
from ranksam_ros.graph.types import Encoded, PromptMaps

INSTALL_HINT = "ONNX Runtime is not installed: pip install 'ranksam_ros[onnx]' (or onnxruntime-gpu)"


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return onnxruntime


def int8_refusal(manifest: dict) -> str:
    """Why an export has no int8 encoder to run, and what to do about it."""
    record = manifest.get("int8")
    if record is None:
        return "no int8 encoder (export with --precision int8)"
    return (
        f"its int8 encoder was rejected by the parity gate ({parity_summary(record)}): "
        "run this model with precision fp32"
    )


class OnnxBackend:
    """Run an export directory (``ranksam export`` output) with ONNX Runtime.

    Args:
        export_dir: Directory holding ``manifest.json`` and the graphs (hashes are verified).
        threads: Intra-op threads (0 = ONNX Runtime's default).
        int8: Use the quantised encoder (only if the export accepted it).
        device: ``cpu`` or ``cuda`` (CUDA execution provider).
    """

    def __init__(
        self,
        export_dir: str | Path,
        threads: int = 0,
        int8: bool = False,
        device: str = "cpu",
        tasks: tuple[str, ...] = (),
    ) -> None:
        ort = _import_ort()
        single_threaded_numpy()
        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        graphs = self.manifest["graphs"]
        available = tuple(graphs.get(names.TASKS, {}).get("tasks", ()))
        missing = sorted(set(tasks) - set(available))
        if missing:
            raise ValueError(
                f"{self.export_dir}: no task output {missing} (the export has {list(available)})"
            )
        if int8 and "encoder_int8" not in graphs:
            raise ValueError(f"{self.export_dir}: {int8_refusal(self.manifest)}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Encoder, predictor and decoder sessions run one after another, each with its own
        # thread pool: spinning workers of the session that just finished would steal the
        # cores from the next one (measured: encoder 52 ms with spinning, 34 ms without).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ImportError("CUDA execution provider missing: pip install onnxruntime-gpu")
            providers.insert(0, "CUDAExecutionProvider")
        self.sessions = {}
        # The multi-task graph is loaded only when tasks are asked for.
        wanted = (names.ENCODER, names.PROMPT_PREDICTOR, names.DECODER) + (
            (names.TASKS,) if tasks else ()
        )
        for name in wanted:
            key = "encoder_int8" if (name == names.ENCODER and int8) else name
            if key in graphs:
                path = str(self.export_dir / graphs[key]["file"])
                self.sessions[name] = ort.InferenceSession(path, options, providers=providers)
        self.decoder_inputs, _ = graph_feeds.graph_io(self.manifest, names.DECODER)
        self.layer_names = list(self.manifest.get("gated_layers", []))
        info = graph_feeds.model_info(self.manifest, "onnxruntime+int8" if int8 else "onnxruntime")
        self.info = dataclasses.replace(info, tasks=tuple(tasks))

    @classmethod
    def from_model(
        cls,
        model: str,
        adapter: str | None = "none",
        threads: int = 0,
        tasks: tuple[str, ...] = (),
        int8: bool = False,
    ) -> OnnxBackend:
        """An export directory, or a shipped model name whose export is in the cache.

        Never exports: a missing export is an error that names the command to run.
        """
        export = resolve_export(model, adapter, "int8" if int8 else "fp32")
        return cls(export, threads=threads, tasks=tasks, int8=int8)

    def encode(self, image: np.ndarray) -> Encoded:
        graph_feeds.check_image(image, self.info.input_size)
        outputs = graph_feeds.run_by_name(self.sessions[names.ENCODER], {names.IMAGE: image})
        return graph_feeds.encoded(outputs, self.layer_names)

    def predict_prompts(self, encoded: Encoded, image: np.ndarray) -> PromptMaps:
        if names.PROMPT_PREDICTOR not in self.sessions:
            raise RuntimeError(f"export {self.export_dir} has no prompt predictor")
        feeds = {names.EMBEDDING: encoded.embedding, names.IMAGE: image}
        return graph_feeds.prompt_maps(
            graph_feeds.run_by_name(self.sessions[names.PROMPT_PREDICTOR], feeds)
        )

    def decode(
        self, encoded: Encoded, coords: np.ndarray, labels: np.ndarray, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        coords, labels = decoder_prompts(coords, labels)
        feeds = graph_feeds.decoder_feeds(encoded, coords, labels, self.decoder_inputs)
        outputs = graph_feeds.run_by_name(self.sessions[names.DECODER], feeds)
        return select_masks(outputs[names.MASKS], outputs[names.IOU], multimask)

    def predict_tasks(self, image: np.ndarray, tasks: tuple[str, ...]) -> dict[str, np.ndarray]:
        missing = sorted(set(tasks) - set(self.info.tasks))
        if missing:
            raise RuntimeError(f"export {self.export_dir} has no task output {missing}")
        graph_feeds.check_image(image, self.info.input_size)
        outputs = graph_feeds.run_by_name(self.sessions[names.TASKS], {names.IMAGE: image})
        return {task: outputs[names.TASK_PREFIX + task][0] for task in tasks}
