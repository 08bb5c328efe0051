"""Choose the semantic head's prior correction on a held-out sequence (see eval/prior.py).

    python scripts/calibrate_semantic_prior.py --model camvid-conv --data /path/to/camvid \
        --json docs/results/semantic_prior_conv.json --plot docs/figures/semantic_prior_conv.png

The head trained with class weights ``(median frequency / frequency) ** --balance`` over the
training frames (``<data>/train`` without ``--holdout``); the script recomputes them, runs the
head once per frame (no adapter, clean frames; raw logits, any correction already in the model
card ignored), and sweeps the strength ``tau`` of the offsets ``-tau * log w``. It picks the
``tau`` with the best semantic mIoU on the held-out sequence; val (which continues a training
sequence) is shown beside it and plays no part in the choice. ``scripts/package_model.py
--calibration JSON`` writes the chosen offsets into the model card.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ranksam_ros.config import DataConfig
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.eval.frames import check_model_classes, frame_indices
from ranksam_ros.eval.prior import head_logits, prior_offsets, sweep_offsets
from ranksam_ros.modeling.ranksam import SEMANTIC_OFFSETS, RankSam
from ranksam_ros.modeling.registry import build_model
from ranksam_ros.reporting import save_figure, write_json
from ranksam_ros.train.samples import class_weights

ROOT = Path(__file__).resolve().parents[1]
TAUS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", default="camvid-conv")
    parser.add_argument("--data", required=True, help="CamVid folder holding train/ and val/")
    parser.add_argument("--holdout", default="0006R0", help="sequence of train/ held out")
    # The foundation recipes' loss.semantic_class_balance (config/train/foundation_conv*.yaml);
    # checkpoints do not record it, so a head trained with another balance must say so here.
    parser.add_argument("--balance", type=float, default=0.5, help="the head's class balance")
    parser.add_argument("--stride", type=int, default=2, help="one frame in N of each split")
    parser.add_argument("--json", default="")
    parser.add_argument("--plot", default="")
    return parser.parse_args()


def split_scores(
    model: RankSam, folder: SegmentationFolder, stride: int, weights: np.ndarray
) -> dict:
    """Semantic mIoU and per-class IoU at every tau on one split."""
    frames = head_logits(model, folder, frame_indices(len(folder), stride))
    ious = sweep_offsets(frames, weights, TAUS)
    return {
        str(tau): {"miou": float(np.nanmean(iou)), "class_iou": np.round(iou, 4).tolist()}
        for tau, iou in ious.items()
    }


def plot(report: dict, path: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for split, scores in report["splits"].items():
        ax.plot(TAUS, [100 * scores[str(t)]["miou"] for t in TAUS], marker="o", label=split)
    ax.axvline(report["best_tau"], color="grey", linestyle=":", label="chosen (held-out)")
    ax.set_xlabel("tau (offsets -tau log w)")
    ax.set_ylabel("semantic mIoU (%)")
    ax.set_title(f"{report['model']}: semantic head prior correction")
    ax.legend()
    save_figure(fig, path)


def main() -> None:
    args = parse_args()
    data = Path(args.data)
    model = build_model(args.model)
    model.calibration = {}  # sweep the raw head, not a correction already in the card
    dataset = DataConfig()
    check_model_classes(model.class_names, dataset)
    training = SegmentationFolder(data / "train", exclude_sequences=(args.holdout,))
    weights = class_weights(training, dataset, args.balance).numpy().astype(np.float64)
    held_out = f"held-out {args.holdout}"
    splits = {
        held_out: SegmentationFolder(data / "train", sequences=(args.holdout,)),
        "val": SegmentationFolder(data / "val"),
    }
    scores = {
        name: split_scores(model, folder, args.stride, weights) for name, folder in splits.items()
    }
    best = max(TAUS, key=lambda tau: scores[held_out][str(tau)]["miou"])
    report = {
        "model": args.model,
        "criterion": f"semantic mIoU of the head on {held_out} (one frame in {args.stride})",
        "data": f"class weights over <camvid>/train without {args.holdout}, balance {args.balance}",
        "class_names": list(model.class_names),
        "class_weights": np.round(weights, 4).tolist(),
        "splits": scores,
        "best_tau": best,
        # + 0.0 turns the -0.0 of a class whose weight is 1 into 0.0 in the JSON.
        SEMANTIC_OFFSETS: (np.round(prior_offsets(weights, best), 4) + 0.0).tolist(),
    }
    for name in scores:
        row = " ".join(f"{tau:g}: {100 * scores[name][str(tau)]['miou']:.1f}" for tau in TAUS)
        print(f"{name:>18}  {row}")
    print(f"chosen tau {best:g} (best on {held_out})")
    if args.json:
        write_json(args.json, report, relative_to=ROOT)
    if args.plot:
        plot(report, args.plot)


if __name__ == "__main__":
    main()
