"""PyTorch engine: the training modules themselves, run in inference mode."""

from __future__ import annotations

import numpy as np
import torch

from ranksam_ros.backends.base import single_threaded_numpy
from ranksam_ros.graph.prompts import is_box_prompt
from ranksam_ros.graph.types import Encoded, ModelInfo, PromptMaps
from ranksam_ros.modeling.multitask import activate
from ranksam_ros.modeling.ranksam import RankSam


class TorchBackend:
    """Run a :class:`RankSam` with numpy in/out.

    Args:
        model: The model (set to eval mode here).
        threads: Intra-op CPU threads (0 keeps torch's default).
        device: ``cpu`` or ``cuda``.
        task_model: A multi-task set (``MultiTaskSam``) for :meth:`predict_tasks`.
    """

    def __init__(
        self,
        model: RankSam,
        threads: int = 0,
        device: str = "cpu",
        task_model: torch.nn.Module | None = None,
    ) -> None:
        if threads > 0:
            torch.set_num_threads(threads)
        single_threaded_numpy()
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.task_model = None if task_model is None else task_model.eval().to(self.device)
        arch = model.arch
        predictor = model.prompt_predictor
        self.info = ModelInfo(
            model_id=model.model_id,
            input_size=arch.img_size,
            pixel_mean=tuple(arch.pixel_mean),
            pixel_std=tuple(arch.pixel_std),
            mask_size=arch.mask_size,
            class_names=model.class_names,
            prompt_predictor=predictor is not None,
            semantic_head=model.semantic_head is not None,
            tasks=() if task_model is None else tuple(task_model.tasks),
            box_mask_threshold=model.calibration.get("box_mask_threshold"),
        )

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self.device)

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> Encoded:
        tensor = self._tensor(image)
        embedding, detail = self.model.encode_with_detail(tensor)
        ranks = self.model.active_ranks()
        layer_ranks = {name: float(r.float().mean()) for name, r in ranks.items()}
        mean = float(np.mean(list(layer_ranks.values()))) if layer_ranks else None
        semantic = None
        if self.model.semantic_head is not None:
            semantic = self.model.semantic_probs(embedding, detail).cpu().numpy()
        detail = None if detail is None else detail.cpu().numpy()
        return Encoded(embedding.cpu().numpy(), mean, layer_ranks, detail, semantic)

    @torch.inference_mode()
    def predict_prompts(self, encoded: Encoded, image: np.ndarray) -> PromptMaps:
        if self.model.prompt_predictor is None:
            raise RuntimeError(f"model {self.info.model_id} has no prompt predictor")
        confidence, class_probs = self.model.prompt_predictor(
            self._tensor(encoded.embedding), self._tensor(image)
        )
        return PromptMaps(confidence[0].cpu().numpy(), class_probs[0].cpu().numpy())

    @torch.inference_mode()
    def decode(
        self, encoded: Encoded, coords: np.ndarray, labels: np.ndarray, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        embedding = self._tensor(encoded.embedding)
        detail = None if encoded.detail is None else self._tensor(encoded.detail)
        coords_t, labels_t = self._tensor(coords), self._tensor(labels)
        if is_box_prompt(labels):
            logits, iou = self.model.decode(
                embedding, boxes=coords_t.reshape(-1, 4), multimask=multimask, detail=detail
            )
        else:
            if np.any(labels >= 2):
                raise ValueError("box corners (labels 2, 3) must form whole (N, 2) box prompts")
            logits, iou = self.model.decode(
                embedding, coords_t, labels_t, multimask=multimask, detail=detail
            )
        return logits.cpu().numpy(), iou.cpu().numpy()

    @torch.inference_mode()
    def predict_tasks(self, image: np.ndarray, tasks: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Activated task outputs ``{task: (C, m, m)}`` of the multi-task set.

        Raises:
            RuntimeError: no multi-task set was loaded, or it lacks a task.
        """
        missing = sorted(set(tasks) - set(self.info.tasks))
        if missing:
            raise RuntimeError(f"{self.info.model_id} has no task output {missing}")
        outputs = self.task_model(self._tensor(image), tuple(tasks))
        return {task: activate(task, out)[0].cpu().numpy() for task, out in outputs.items()}
