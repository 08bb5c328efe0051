"""TensorRT engine: cached engines per export, torch CUDA tensors as device buffers.

Engines come from :mod:`ranksam_ros.deploy.trt_build` (same key and policy as
``ranksam build-engine``); each graph gets its own execution context, and all run on one
non-default CUDA stream (TensorRT warns that the default stream adds synchronisations).
``tensorrt`` and CUDA are only touched when this backend is constructed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ranksam_ros.deploy.cache import resolve_export
from ranksam_ros.deploy.trt_build import DEFAULT_PROMPTS, build_export_engines, decoder_sizes
from ranksam_ros.deploy.trt_engine import import_tensorrt
from ranksam_ros.graph import feeds as graph_feeds
from ranksam_ros.graph import names
from ranksam_ros.graph.manifest import read_manifest
from ranksam_ros.graph.prompts import decoder_prompts, select_masks
from ranksam_ros.graph.types import Encoded, PromptMaps


@dataclass(frozen=True)
class _InputSpec:
    dtype: np.dtype
    min_shape: tuple[int, ...]
    max_shape: tuple[int, ...]


class _EngineRunner:
    """One deserialized engine with its execution context; numpy in, numpy out."""

    def __init__(self, trt, engine, name: str, device, stream) -> None:
        self.name = name
        self.engine = engine
        self.context = engine.create_execution_context()
        self.device, self.stream = device, stream
        self.inputs: dict[str, _InputSpec] = {}
        self.outputs: dict[str, np.dtype] = {}
        for i in range(engine.num_io_tensors):
            tensor = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(tensor)))
            if engine.get_tensor_mode(tensor) != trt.TensorIOMode.INPUT:
                self.outputs[tensor] = dtype
                continue
            shape = tuple(engine.get_tensor_shape(tensor))
            if any(d < 0 for d in shape):
                low, _, high = engine.get_tensor_profile_shape(tensor, 0)
                shape, high = tuple(low), tuple(high)
            else:
                high = shape
            self.inputs[tensor] = _InputSpec(dtype, shape, high)

    def validate(self, feeds: dict[str, np.ndarray]) -> None:
        """Names, dtypes and shapes against the engine's profile, before touching the GPU.

        Raises:
            ValueError: a missing/unknown input, wrong dtype or rank, or a dim outside the
                profile (the message says how to rebuild with a larger one).
        """
        if set(feeds) != set(self.inputs):
            raise ValueError(f"{self.name} engine takes {sorted(self.inputs)}, got {sorted(feeds)}")
        for tensor, array in feeds.items():
            spec = self.inputs[tensor]
            if array.dtype != spec.dtype:
                raise ValueError(
                    f"{self.name}.{tensor}: dtype {array.dtype}, engine takes {spec.dtype}"
                )
            ok = len(array.shape) == len(spec.min_shape) and all(
                lo <= d <= hi for d, lo, hi in zip(array.shape, spec.min_shape, spec.max_shape)
            )
            if not ok:
                raise ValueError(
                    f"{self.name}.{tensor}: shape {array.shape} outside the engine profile "
                    f"{spec.min_shape}..{spec.max_shape}; rebuild with `ranksam build-engine` "
                    "and a larger range (e.g. --max-prompts) if needed"
                )

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate, copy in, execute on the stream, copy out."""
        import torch

        feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items()}
        self.validate(feeds)
        with torch.cuda.stream(self.stream):
            buffers = {k: torch.from_numpy(v).to(self.device) for k, v in feeds.items()}
            for tensor, buffer in buffers.items():
                if self.context.set_input_shape(tensor, tuple(buffer.shape)) is False:
                    raise ValueError(
                        f"{self.name}.{tensor}: TensorRT rejected shape {tuple(buffer.shape)}"
                    )
                self.context.set_tensor_address(tensor, buffer.data_ptr())
            outputs = {}
            for tensor, dtype in self.outputs.items():
                shape = tuple(self.context.get_tensor_shape(tensor))
                if any(d < 0 for d in shape):
                    raise RuntimeError(f"{self.name}.{tensor}: data-dependent output shape {shape}")
                torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
                outputs[tensor] = torch.empty(shape, dtype=torch_dtype, device=self.device)
                self.context.set_tensor_address(tensor, outputs[tensor].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT execution of the {self.name} engine failed")
            result = {tensor: buffer.cpu().numpy() for tensor, buffer in outputs.items()}
        self.stream.synchronize()  # inputs stay referenced until the work is done
        return result


class TensorRTBackend:
    """Run an export directory with TensorRT engines (built or reused per the cache key).

    Args:
        export_dir: ``ranksam export`` output (hashes verified).
        precision: ``fp16`` (LayerNorm and gate logits kept fp32) or ``fp32``.
        cache_dir: Engine cache (default ``$RANKSAM_CACHE/engines``).
        policy: ``if_missing`` (build once, logged), ``never`` (error if absent) or ``always``.
        max_prompts, opt_prompts: Decoder prompt-batch profile; larger batches are chunked.
        device: CUDA device index.
    """

    def __init__(
        self,
        export_dir: str | Path,
        precision: str = "fp16",
        cache_dir: str | Path | None = None,
        policy: str = "if_missing",
        max_prompts: int = DEFAULT_PROMPTS[2],
        opt_prompts: int = DEFAULT_PROMPTS[1],
        device: int = 0,
    ) -> None:
        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(
                "the TensorRT backend needs a CUDA GPU (torch.cuda.is_available() is False)"
            )
        self.export_dir = Path(export_dir).expanduser()
        self.manifest = read_manifest(self.export_dir)
        self.device = torch.device("cuda", device)
        major, minor = torch.cuda.get_device_capability(self.device)
        with torch.cuda.device(self.device):  # TensorRT builds and runs on the current device
            self.engines = build_export_engines(
                self.export_dir,
                precision,
                cache_dir,
                policy,
                decoder_sizes(max_prompts, opt_prompts),
                trt_version=str(trt.__version__),
                compute_capability=f"{major}.{minor}",
            )
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)  # must outlive its engines
            stream = torch.cuda.Stream(device=self.device)
            self.runners = {
                name: _EngineRunner(trt, self._load(record.path), name, self.device, stream)
                for name, record in self.engines.items()
            }
        self.layer_names = list(self.manifest.get("gated_layers", []))
        self.info = graph_feeds.model_info(self.manifest, f"tensorrt-{precision}")
        self.decoder_inputs, _ = graph_feeds.graph_io(self.manifest, names.DECODER)
        decoder = self.runners[names.DECODER]
        self.max_prompts = decoder.inputs[names.POINT_COORDS].max_shape[0]

    def _load(self, path: Path):
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise RuntimeError(
                f"{path}: TensorRT could not deserialize the engine (other TensorRT release or "
                "GPU?); rebuild it with `ranksam build-engine --force`"
            )
        return engine

    @classmethod
    def from_model(cls, model: str, adapter: str | None = "none", **kwargs) -> TensorRTBackend:
        """An export directory, or a shipped model name whose export is in the cache.

        Never exports: a missing export is an error that names the command to run.
        """
        import_tensorrt()  # fail with the install hint before anything else
        return cls(resolve_export(model, adapter), **kwargs)

    def encode(self, image: np.ndarray) -> Encoded:
        graph_feeds.check_image(image, self.info.input_size)
        out = self.runners[names.ENCODER].run({names.IMAGE: image})
        return graph_feeds.encoded(out, self.layer_names)

    def predict_prompts(self, encoded: Encoded, image: np.ndarray) -> PromptMaps:
        if names.PROMPT_PREDICTOR not in self.runners:
            raise RuntimeError(f"export {self.export_dir} has no prompt predictor")
        feeds = {names.EMBEDDING: encoded.embedding, names.IMAGE: image}
        return graph_feeds.prompt_maps(self.runners[names.PROMPT_PREDICTOR].run(feeds))

    def decode(
        self, encoded: Encoded, coords: np.ndarray, labels: np.ndarray, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        coords, labels = decoder_prompts(coords, labels)
        if len(coords) == 0:
            size, k = self.info.mask_size, 3 if multimask else 1
            return np.zeros((0, k, size, size), np.float32), np.zeros((0, k), np.float32)
        masks, iou = [], []
        runner = self.runners[names.DECODER]
        # Batches above the profile's max are split rather than rejected.
        for start in range(0, len(coords), self.max_prompts):
            chunk = slice(start, start + self.max_prompts)
            feeds = graph_feeds.decoder_feeds(
                encoded, coords[chunk], labels[chunk], self.decoder_inputs
            )
            out = runner.run(feeds)
            masks.append(out[names.MASKS])
            iou.append(out[names.IOU])
        return select_masks(np.concatenate(masks), np.concatenate(iou), multimask)

    def predict_tasks(self, image: np.ndarray, tasks: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Multi-task outputs are not built into TensorRT engines (torch or ONNX Runtime)."""
        raise RuntimeError("task outputs run on the torch and onnxruntime backends")
