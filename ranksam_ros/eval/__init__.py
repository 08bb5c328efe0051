"""Evaluation on labelled image folders (``ranksam eval``).

``options`` (what a run takes), ``frames`` (which frames, degraded how), ``segments`` (box /
one-click segment IoU), ``promptless`` (automatic prompts and SAM's grid, semantic mIoU),
``confusion`` (pixel confusion and IoU), ``evaluate`` (the entry point and its text summary).
Nothing here imports training, ROS or the benchmark.
"""
