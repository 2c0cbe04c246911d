"""How a sample's members are read: where its caption and label are, which images and names are valid."""

from __future__ import annotations

from dataclasses import dataclass

from datapruner.config import Config


@dataclass(frozen=True)
class SampleFields:
    caption_field: str
    label_field: str
    max_image_pixels: int
    allow_unsafe_names: bool
    max_full_decode_pixels: int = Config.max_full_decode_pixels
