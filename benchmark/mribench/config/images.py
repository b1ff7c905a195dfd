"""How every image is read (`preprocess:`: size, channels, resampling, normalisation) and
varied while training (`augment:`)."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from mribench.config.strict import Strict


class PreprocessConfig(Strict):
    image_size: Annotated[int, Field(ge=8, le=2048)] = Field(
        224, description="Side in pixels every image is resized to.")
    channels: Literal[1, 3] = Field(
        3, description="1 (grayscale) or 3 (RGB); every file is converted to it.")
    interpolation: Literal["area", "bilinear", "bicubic", "nearest"] = Field(
        "bilinear", description="Resampling filter for the resize.")
    # the model's own pretrained statistics (ImageNet mean/std for most, 0.5/0.5 for the
    # TF-ported EfficientNet-Lite), always-ImageNet, or plain [0,1] scaling (Study B)
    # (Study D: the paper applies no normalisation at all: 0-255 as Keras' image loader yields)
    normalize: Literal["model", "imagenet", "unit", "raw"] = Field(
        "model", description="model: the model's own pretrained statistics; imagenet: always ImageNet "
        "mean/std; unit: plain [0, 1] scaling; raw: 0-255 pixel values.")

class AugmentConfig(Strict):
    rotation: Annotated[float, Field(ge=0, le=180)] = Field(0.0, description="Random rotation, +- degrees.")
    hflip: bool = Field(False, description="Random horizontal flips.")
    vflip: bool = Field(False, description="Random vertical flips.")
    brightness: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="Random brightness change, +- this factor.")

    @property
    def active(self) -> bool:
        return bool(self.rotation or self.hflip or self.vflip or self.brightness)
