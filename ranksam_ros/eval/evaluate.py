"""``ranksam eval``'s entry point: one options record in, one JSON-ready report out.

Also the report's human-readable summary (the JSON keeps every number).
"""

from __future__ import annotations

from ranksam_ros.backends import Backend
from ranksam_ros.config import PipelineConfig
from ranksam_ros.config_loader import load_config
from ranksam_ros.eval.options import PANOPTIC_MODE, SEGMENT_PROMPTS, EvalOptions
from ranksam_ros.eval.panoptic import evaluate_panoptic
from ranksam_ros.eval.promptless import evaluate_promptless
from ranksam_ros.eval.segments import evaluate_segments

MIOU_KEYS = (
    "pq",
    "pq_things",
    "pq_stuff",
    "boundary_f1",
    "boundary_iou",
    "boundary_iou_001",
    "miou",
    "miou_large",
    "miou_unclipped",
    "miou_large_unclipped",
    "box_baseline_miou",
    "box_baseline_miou_large",
)
COUNT_KEYS = ("images", "segments", "prompts_per_image", "seconds_per_image", "mean_active_rank")


def evaluate(options: EvalOptions, backend: Backend | None = None) -> dict:
    """Run the evaluation described by ``options`` and return its report.

    Args:
        options: Model, data, prompt mode, degradation, ...
        backend: An engine already loaded (its model replaces ``options``' engine fields;
            ``--prompts grid`` always builds its own torch model).

    Raises:
        ValueError: bad pipeline overrides, an empty folder, or a model whose class names
            differ from ``options.dataset``'s.
        FileNotFoundError: ``options.data`` lacks images/ or labels/.
    """
    cfg = load_config(PipelineConfig, None, options.pipeline_overrides)
    if options.prompts in SEGMENT_PROMPTS:
        return evaluate_segments(options, cfg, backend)
    if options.prompts == PANOPTIC_MODE:
        return evaluate_panoptic(options, backend, cfg)
    return evaluate_promptless(options, backend, cfg)


def format_report(report: dict) -> str:
    """Summary lines of a report from :func:`evaluate`."""
    header = f"model {report['model']}  prompts {report['prompts']}  degrade {report['degrade']}"
    if report.get("sequences"):
        header += f"  sequences {','.join(report['sequences'])}"
    lines = [header]
    for key in MIOU_KEYS:
        if key in report:
            lines.append(f"  {key:<24} {report[key]:.4f}")
    for key in COUNT_KEYS:
        if report.get(key) is not None:
            value = report[key]
            lines.append(
                f"  {key:<24} {value:.4f}" if isinstance(value, float) else f"  {key:<24} {value}"
            )
    classes = "  ".join(f"{k} {v:.3f}" for k, v in report.get("class_iou", {}).items())
    lines.append(f"  class_iou: {classes}")
    return "\n".join(lines)
