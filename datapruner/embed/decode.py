"""Turning one sample's raw members into what the model and the metadata need."""

from __future__ import annotations

import io
import json
import re

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


class UnusableSample(ValueError):
    """The sample cannot be embedded; the message is the reason recorded in errors/."""


def image_bytes(members: dict[str, bytes]) -> bytes:
    for ext in IMAGE_EXTS:
        if ext in members:
            return members[ext]
    raise UnusableSample(f"no image member (looked for {', '.join(IMAGE_EXTS)}; found {', '.join(sorted(members))})")


def decode_image(data: bytes, min_size: int | None = None):
    """RGB image; with `min_size`, a JPEG much larger than that is decoded at a reduced scale (libjpeg's
    DCT scaling, via PIL's draft) whose sides stay ≥ min_size: the same input after the model's resize,
    for a fraction of the decoding work."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        if min_size:
            img.draft("RGB", (min_size, min_size))
        img.load()
        return img.convert("RGB")
    except Exception as exc:  # PIL raises many types for corrupt data
        raise UnusableSample(f"undecodable image: {type(exc).__name__}: {stable(str(exc))}") from None


_ADDRESS = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


def stable(message: str) -> str:
    """A reason that is the same for the same input: object reprs lose their heap address."""
    return _ADDRESS.sub(r"<\1>", message)


def json_of(members: dict[str, bytes]) -> dict:
    if "json" not in members:
        return {}
    try:
        value = json.loads(members["json"])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def text_fields(members: dict[str, bytes], caption_field: str, label_field: str) -> dict:
    """caption, label and uid, each None when the sample lacks it."""
    meta = json_of(members)
    caption = members["txt"].decode("utf-8", "replace") if "txt" in members else meta.get(caption_field)
    label = _int_or_none(members["cls"].decode().strip()) if "cls" in members else _int_or_none(meta.get(label_field))
    uid = meta.get("uid")
    return {"caption": caption, "label": label, "uid": None if uid is None else str(uid)}


def _int_or_none(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
