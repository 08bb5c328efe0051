"""Measure the box-prompt mask threshold: best mIoU with large segments at 0.80.

    python scripts/calibrate_threshold.py --data /path/to/camvid/train --sequences 0006R0

Choose it on a sequence held out of training (``--sequences``), not on val, which continues a
training sequence.

A mask loss puts the 0-logit boundary where a pixel is as likely in as out, but the cut that
maximises IoU lies lower for calibrated probabilities (about half the attainable score), so
masks cut at logit 0 come out slightly too small. This script sweeps
``pipeline.box_mask_threshold`` with box prompts (clipped to their box, the default) on clean
frames, no adapter, and picks the value with the best mIoU over all segments among those that
keep large segments (>= 1000 px) at or above ``--large-floor`` (or, with ``--large-slack``,
within that much of their own best cut), or the best over all segments if none does. It writes
the sweep to ``--json`` and ``--plot``; ``--from-json`` re-chooses from a sweep already
measured. The chosen cut becomes the model's own: ``scripts/package_model.py --calibration
JSON`` writes it into the model card, where ``PipelineConfig.box_mask_threshold`` (unset)
finds it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ranksam_ros.backends import create_backend
from ranksam_ros.config import BackendConfig
from ranksam_ros.eval.evaluate import evaluate
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.reporting import save_figure, write_json

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = (-3.0, -2.5, -2.0, -1.5, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5)


def sweep(args: argparse.Namespace, thresholds: tuple[float, ...]) -> list[dict]:
    """Box-prompt mIoU (all and large segments) at each logit threshold."""
    backend = create_backend(BackendConfig(model=args.model, threads=2))
    sequences = tuple(s for s in args.sequences.split(",") if s)
    rows = []
    for threshold in thresholds:
        options = EvalOptions(
            model=args.model,
            data=args.data,
            limit=args.limit,
            stride=args.stride,
            sequences=sequences,
            threads=2,
            pipeline_overrides=(f"box_mask_threshold={threshold}",),
        )
        report = evaluate(options, backend)
        rows.append(
            {"threshold": threshold, "miou": report["miou"], "miou_large": report["miou_large"]}
        )
        print(
            f"threshold {threshold:+.2f}: miou {report['miou']:.4f} large {report['miou_large']:.4f}"
        )
    return rows


def choose(rows: list[dict], large_floor: float, large_slack: float | None = None) -> float:
    """The threshold with the best all-segment mIoU among rows meeting the large-segment floor.

    With ``large_slack`` the floor is the best large-segment mIoU of the sweep minus it.
    Falls back to the best all-segment mIoU when no row meets the floor (or the floor is 0).
    """
    if large_slack is not None:
        large_floor = max(r["miou_large"] for r in rows) - large_slack
    meeting = [r for r in rows if r["miou_large"] >= large_floor] or rows
    return max(meeting, key=lambda r: r["miou"])["threshold"]


def plot(rows: list[dict], chosen: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [r["threshold"] for r in rows]
    ax.plot(xs, [r["miou"] for r in rows], "o-", label="all segments")
    ax.plot(xs, [r["miou_large"] for r in rows], "s-", label="large (>= 1000 px)")
    ax.axvline(chosen, color="gray", linestyle="--", label=f"chosen {chosen:+.2f}")
    ax.set_xlabel("box_mask_threshold (mask logit cut of box prompts)")
    ax.set_ylabel("box-prompt mIoU, clean frames")
    ax.legend()
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", default="camvid-tiny")
    parser.add_argument("--data", required=True, help="a CamVid folder (images/, labels/)")
    parser.add_argument(
        "--sequences", default="", help="comma-separated sequence prefixes, e.g. 0006R0"
    )
    parser.add_argument("--limit", type=int, default=0, help="first N frames only (0 = all)")
    parser.add_argument("--stride", type=int, default=1, help="every Nth frame")
    parser.add_argument(
        "--large-floor", type=float, default=0.80, help="large-segment mIoU to keep (0 = off)"
    )
    parser.add_argument(
        "--large-slack",
        type=float,
        default=None,
        help="keep large segments within this of their best cut (replaces --large-floor)",
    )
    parser.add_argument("--from-json", default="", help="re-choose from this measured sweep")
    parser.add_argument("--json", default=str(ROOT / "docs/results/calibration.json"))
    parser.add_argument("--plot", default=str(ROOT / "docs/figures/calibration.png"))
    args = parser.parse_args()
    if args.from_json:
        measured = json.loads(Path(args.from_json).read_text())
        rows, data = measured["sweep"], measured.get("data", measured["criterion"])
    else:
        rows, data = sweep(args, THRESHOLDS), describe_data(args)
    best = choose(rows, args.large_floor, args.large_slack)
    rule = (
        f"within {args.large_slack} of their best"
        if args.large_slack is not None
        else f">= {args.large_floor}"
    )
    result = {
        "model": args.model,
        "criterion": f"box-prompt mIoU over all segments among cuts keeping large segments {rule}",
        "data": data,
        "best_box_mask_threshold": best,
        "sweep": rows,
    }
    write_json(args.json, result, relative_to=ROOT)
    plot(rows, best, Path(args.plot))
    print(f"best box_mask_threshold {best:+.2f} -> {args.json}, plot {args.plot}")
    print(f"into the model card: scripts/package_model.py ... --calibration {args.json}")


def describe_data(args: argparse.Namespace) -> str:
    return (
        f"clean frames of {args.data} (sequences {args.sequences or 'all'}, one in "
        f"{args.stride}), no adapter"
    )


if __name__ == "__main__":
    main()
