"""ranksam_ros: robust, promptless segmentation for robots (SAM + gated-rank adapters)."""

__version__ = "0.1.0"
