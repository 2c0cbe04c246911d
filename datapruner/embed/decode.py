"""Turning one sample's raw members into what the model and the metadata need.

Every way a sample's data can be unusable raises UnusableSample whose message is the reason recorded in
errors/ (`category: detail`, datapruner.reasons); nothing here raises anything else for bad data.
"""

from __future__ import annotations

import io
import json
import re
import warnings

from datapruner.config import Config
from datapruner.embed.outputs import METADATA_SCHEMA
from datapruner.reasons import reason

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(r"[+-]?[0-9]+")
OWN_FIELDS = tuple(METADATA_SCHEMA.names)  # the metadata columns that are ours, never the source's


class UnusableSample(ValueError):
    """The sample cannot be embedded; the message is the reason recorded in errors/."""


def image_bytes(members: dict[str, bytes]) -> bytes:
    for ext in IMAGE_EXTS:
        if ext in members:
            return members[ext]
    raise UnusableSample(reason(
        "no image", f"no image member (looked for {', '.join(IMAGE_EXTS)}; found {', '.join(sorted(members))})"))


# PIL decodes only JPEGs at a reduced scale (libjpeg's DCT scaling, via draft); every other format costs
# its full size in memory and time (a 168-MP PNG: 3.5 s of a core), so max_full_decode_pixels caps those.
DRAFT_FORMATS = ("JPEG",)


def decode_image(data: bytes, min_size: int | None = None, *, max_pixels: int | None = None,
                 full_decode_pixels: int | None = None):
    """RGB image; with `min_size`, a JPEG much larger than that is decoded at a reduced scale whose sides
    stay ≥ min_size: the same input after the model's resize, for a fraction of the decoding work. An
    image over `max_pixels`, or one in a format decoded only at full size over `full_decode_pixels`
    (None: the config's defaults), is refused from its header, before any pixel is decoded."""
    img = open_image(data, max_pixels, full_decode_pixels)
    try:
        if min_size:
            img.draft("RGB", (min_size, min_size))
        img.load()
        return as_rgb(img)
    except Exception as exc:
        raise _undecodable(exc) from None


def as_rgb(img):
    """The image in RGB (itself when it is RGB: converting to its own mode would copy it)."""
    if img.mode == "RGB":
        return img
    with warnings.catch_warnings():
        # a palette image whose transparency is bytes: PIL drops the transparency, as RGB must, and warns
        warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
        return img.convert("RGB")


def open_image(data: bytes, max_pixels: int | None = None, full_decode_pixels: int | None = None):
    """The PIL image with only its header read, refused (UnusableSample) when it is too large to decode."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # max_pixels replaces PIL's cap, which would warn, then raise, below ours
    try:
        img = Image.open(io.BytesIO(data))
    except Exception as exc:  # PIL raises many types for corrupt data
        raise _undecodable(exc) from None
    full_size = img.format not in DRAFT_FORMATS
    _check_pixels(img, _or_default(max_pixels, "max_image_pixels"),
                  _or_default(full_decode_pixels, "max_full_decode_pixels") if full_size else None)
    return img


def _or_default(value: int | None, name: str) -> int:
    return getattr(Config, name) if value is None else value


def is_device_jpeg(img) -> bool:
    """Whether a GPU JPEG decoder (nvJPEG via torchvision) takes this image as PIL does: baseline or
    progressive YCbCr or greyscale (CMYK and the rest go through PIL)."""
    return img.format == "JPEG" and img.mode in ("RGB", "L")


def _undecodable(exc: Exception) -> UnusableSample:
    return UnusableSample(reason("undecodable image", f"{type(exc).__name__}: {exc}"))


def _check_pixels(img, limit: int, full_decode_limit: int | None) -> None:
    """Refuse an image over max_image_pixels, or (`full_decode_limit` given: a format decoded only at full
    size) over max_full_decode_pixels; the reason names every setting that would have to be raised."""
    width, height = img.size
    pixels = width * height
    over_full = full_decode_limit is not None and pixels > full_decode_limit
    if pixels > limit:
        names = "max_image_pixels and max_full_decode_pixels" if over_full else "max_image_pixels"
        raise UnusableSample(reason(
            "image too large", f"{width}×{height} = {pixels} pixels > max_image_pixels {limit} (raise {names} to keep it)"))
    if over_full:
        raise UnusableSample(reason(
            "image too large", f"{img.format or 'an image'} of {width}×{height} = {pixels} pixels > "
                               f"max_full_decode_pixels {full_decode_limit} (formats other than JPEG are decoded at "
                               "full size: raise max_full_decode_pixels to keep it)"))


def json_of(members: dict[str, bytes]) -> dict:
    """The json member as a dict ({} without one)."""
    if "json" not in members:
        return {}
    try:
        value = json.loads(members["json"])
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise UnusableSample(reason("bad json", f"the json member does not parse: {_first_line(exc)}")) from None
    if not isinstance(value, dict):
        raise UnusableSample(reason("bad json", f"the json member is {_kind(value)}, not an object"))
    return value


def text_fields(members: dict[str, bytes], caption_field: str, label_field: str, meta: dict | None = None) -> dict:
    """caption, label and uid, each None when the sample lacks it. A txt member wins over the json's
    caption field and a cls member over its label field; a txt that is not UTF-8 is decoded with
    replacement characters (the caption stays usable). `meta`: the json member, when already parsed."""
    meta = json_of(members) if meta is None else meta
    caption = members["txt"].decode("utf-8", "replace") if "txt" in members else _json_caption(meta, caption_field)
    label = _cls_label(members["cls"]) if "cls" in members else _json_label(meta, label_field)
    uid = meta.get("uid")
    return {"caption": caption, "label": label, "uid": None if uid is None else _storable(str(uid))}


def metadata_row(sample, shard: str, beside: dict[str, dict], caption_field: str, label_field: str) -> dict:
    """A valid sample's metadata row: the source's fields (img2dataset's per-shard parquet, then the json
    member's), with ours over them. Raises UnusableSample for a bad json, caption or label."""
    meta = json_of(sample.members)
    row = {**beside.get(sample.key, {}), **_extras(meta)}
    row.update(shard=shard, key=sample.key, offset=sample.offset, length=sample.length)
    row.update(text_fields(sample.members, caption_field, label_field, meta))
    return row


def _extras(meta: dict) -> dict:
    """The json's top-level fields beyond ours (url, width, height, sha256, status, exif, …), for the
    metadata's extra columns: strings made storable, nested values left for outputs.scalar_column."""
    return {_storable(k): _storable(v) if isinstance(v, str) else v for k, v in meta.items() if k not in OWN_FIELDS}


def beside_rows(url: str) -> dict[str, dict]:
    """{key: row} of img2dataset's per-shard parquet beside the tar (00000.parquet next to 00000.tar),
    without our columns; {} when there is none (or it cannot be read: the samples stay usable)."""
    import fsspec
    import pyarrow.parquet as pq

    if url.startswith("pipe:"):
        return {}
    from datapruner.io.shards import SHARD_SUFFIXES

    suffix = next((s for s in SHARD_SUFFIXES if url.lower().endswith(s)), "")
    path = url[: len(url) - len(suffix)] + ".parquet"
    try:
        fs, p = fsspec.core.url_to_fs(path)
        if not fs.exists(p):
            return {}
        with fs.open(p, "rb") as f:
            table = pq.read_table(f)
    except Exception:  # a damaged side file loses its columns, never the samples
        return {}
    if "key" not in table.column_names:
        return {}
    keys = [None if k is None else str(k) for k in table.column("key").to_pylist()]
    table = table.drop_columns([c for c in table.column_names if c in OWN_FIELDS])
    rows = table.to_pylist()
    return {k: r for k, r in zip(keys, rows) if k is not None}


def _json_caption(meta: dict, field: str) -> str | None:
    value = meta.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise UnusableSample(reason("bad caption", f"json field {field!r} is {_kind(value)}, not a string"))
    if _storable(value) != value:
        raise UnusableSample(reason("bad caption", f"json field {field!r} holds a lone surrogate (\\u escape)"))
    return value


def _cls_label(data: bytes) -> int:
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise UnusableSample(reason("bad label", f"the cls member is not UTF-8: {_short(repr(data))}")) from None
    if not _INTEGER.fullmatch(text):
        raise UnusableSample(reason("bad label", f"the cls member {_short(repr(text))} is not an integer"))
    return _int64(text, "the cls member")


def _json_label(meta: dict, field: str) -> int | None:
    value = meta.get(field)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return _int64(value.strip(), f"json field {field!r}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise UnusableSample(reason("bad label", f"json field {field!r} is {_kind(value)}, not an integer"))
    return _int64(str(value), f"json field {field!r}")


def _int64(digits: str, where: str) -> int:
    # the length test first: int() refuses strings of thousands of digits
    if len(digits.lstrip("+-").lstrip("0")) > 19 or not INT64[0] <= int(digits) <= INT64[1]:
        raise UnusableSample(reason("bad label", f"{where} {_short(digits)} is beyond int64"))
    return int(digits)


def _kind(value) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _first_line(exc: Exception) -> str:
    return _short(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 120)


def _storable(text: str) -> str:
    """`text` with lone surrogates (from json \\u escapes) written as \\uXXXX: Arrow refuses them."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
