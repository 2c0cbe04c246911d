"""How a sample's members are read: where its caption and label are, which images and names are valid."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SampleFields:
    caption_field: str
    label_field: str
    max_image_pixels: int
    allow_unsafe_names: bool
