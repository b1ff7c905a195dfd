"""Schema of the robust copy matcher's thresholds (`datasets[].copy_match`; data/copies.py)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mribench.config.strict import Strict


class CopyMatchConfig(Strict):
    """Thresholds of `dedup: robust` (and `split.groups: robust`): a pair is a robust copy when
    it is among either image's `candidates` most similar images, and a similarity transform
    fitted to their ORB keypoints by RANSAC has at least `min_inliers` inliers and aligns them
    to a correlation of at least `min_correlation`."""

    candidates: Annotated[int, Field(ge=1, le=50)] = Field(
        8, description="Pairs verified per image: its most similar images at 16x16 over crops of "
        "the frame.")
    min_inliers: Annotated[int, Field(ge=3)] = Field(
        25, description="Keypoint matches the fitted similarity transform must explain.")
    min_correlation: Annotated[float, Field(ge=0, le=1)] = Field(
        0.9, description="Pixel correlation of the aligned pair over the head; adjacent slices of one "
        "patient mostly stay below 0.9, lower it to count them as copies.")
