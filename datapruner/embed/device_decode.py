"""JPEG decode on the GPU (nvJPEG, batched, through torchvision) and open_clip's preprocessing on tensors.

The tensor preprocessing also serves CPU decoding (TensorInput): one implementation of the
resize, crop and normalisation on every path, and a cheaper one than PIL's.

At GPU speeds CPU decode is the bottleneck, so on CUDA the decode workers only read the shards and check
each image's header (embed/stream.py, Decoder.jpegs_raw); the raw JPEGs are decoded here, on the model's
device, and resized, cropped and normalised there as open_clip's PIL transforms would. Other formats, and
JPEGs the GPU decoder refuses, are decoded by PIL as on the CPU path, so the same samples are valid.
The same functions run on CPU tensors (the tests compare them with the PIL path).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from functools import cached_property

import torch

from datapruner.embed.decode import UnusableSample, decode_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorPreprocess:
    """open_clip's image transform (Resize shorter side, CenterCrop, to float, Normalize) on uint8 CHW tensors."""

    size: int
    crop: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: object  # torchvision InterpolationMode

    @classmethod
    def of(cls, preprocess) -> "TensorPreprocess | None":
        """The transform read from open_clip's Compose; None when it holds a step this module does not
        reproduce (e.g. resize_mode "longest" or "squash"), so the CPU path is kept."""
        from torchvision import transforms as T

        found: dict = {}
        for step in getattr(preprocess, "transforms", None) or [None]:
            kind = type(step).__name__
            if isinstance(step, T.Resize):
                size = step.size if isinstance(step.size, int) else step.size[0] if len(step.size) == 1 else None
                if size is None or step.max_size is not None:
                    return None
                found["size"], found["interpolation"] = size, step.interpolation
            elif isinstance(step, T.CenterCrop):
                found["crop"] = tuple(step.size)
            elif isinstance(step, T.Normalize):
                found["mean"], found["std"] = tuple(step.mean), tuple(step.std)
            elif kind not in ("MaybeConvertMode", "MaybeToTensor", "ToTensor", "function"):
                return None
        if set(found) != {"size", "interpolation", "crop", "mean", "std"}:
            return None
        return cls(**found)

    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        """uint8 (3, H, W) images, on any device → the model's float input batch on that device."""
        return self.normalised(torch.stack([self.cropped(img) for img in images]))

    def cropped(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) → resized and center-cropped uint8 (3, h, w) (a view)."""
        from torchvision.transforms.v2 import functional as F

        resized = F.resize(image, [self.size], interpolation=self.interpolation, antialias=True)
        return F.center_crop(resized, list(self.crop))

    def normalised(self, images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (..., 3, h, w) → float, normalised as open_clip's Normalize after ToTensor; written into
        `out` (float32, that shape, that device) when given."""
        # one copy into a contiguous float tensor: ~3x cheaper than .float() on a cropped view
        out = torch.empty(images.shape, dtype=torch.float32, device=images.device) if out is None else out
        out.copy_(images)
        scale, shift = self._scale_shift
        return out.mul_(scale.to(out.device)).sub_(shift.to(out.device))

    @cached_property
    def _scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(x / 255 - mean) / std as x * scale - shift, per channel; built once (per image it costs ~0.1 ms)."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return 1 / (255 * std), mean / std


@dataclass(frozen=True)
class TensorInput:
    """open_clip's resize and crop of a decoded RGB PIL image, through TensorPreprocess: torchvision's uint8
    antialiased resize is ~6× PIL's bicubic on one core and within one intensity level of it (embedding
    cosine to the PIL path's > 0.9999), so decoding takes less of the model's CPU. It returns the uint8
    crop: the batch is normalised where the model runs (ModelInputs), a quarter of the bytes to move."""

    prep: TensorPreprocess

    def __call__(self, image) -> torch.Tensor:
        import numpy as np

        rgb = torch.from_numpy(np.array(image.convert("RGB") if image.mode != "RGB" else image)).permute(2, 0, 1)
        return self.prep.cropped(rgb)


class ModelInputs:
    """A batch's model input on the model's device: TensorInput's uint8 crops normalised into one float
    tensor reused batch after batch (the batch before has been embedded by then), other inputs as they are.
    On the CPU a fresh tensor per batch costs its page faults, ~15 ms a 64-image batch, the
    normalisation itself ~3 ms."""

    def __init__(self, preprocess):
        self.prep = getattr(preprocess, "prep", None)  # TensorInput's transform; PIL's makes float inputs
        self._buffer: torch.Tensor | None = None

    def __call__(self, images: torch.Tensor, device) -> torch.Tensor:
        images = images.to(device, non_blocking=True)
        if images.dtype != torch.uint8:
            return images
        if self._buffer is None or self._buffer.device != images.device or len(self._buffer) < len(images) \
                or self._buffer.shape[1:] != images.shape[1:]:
            self._buffer = torch.empty(images.shape, dtype=torch.float32, device=images.device)
        return self.prep.normalised(images, out=self._buffer[: len(images)])


def worker_preprocess(preprocess):
    """What the decode workers apply to each decoded image: TensorInput when open_clip's transform is one
    TensorPreprocess reproduces, else the transform itself."""
    prep = TensorPreprocess.of(preprocess)
    if prep is None:
        log.info("the model's preprocessing is not Resize+CenterCrop+Normalize: PIL's transforms preprocess")
        return preprocess
    return TensorInput(prep)


def jpeg_preprocess_on(clip) -> TensorPreprocess | None:
    """The tensor transform when JPEGs are decoded on the model's GPU; None (the CPU decode path, with a
    log line saying why) on the CPU, without a working GPU decoder, or with a transform not reproduced."""
    if not str(clip.device).startswith("cuda"):
        return None
    prep = TensorPreprocess.of(clip.preprocess)
    if prep is None:
        log.warning("the model's preprocessing is not Resize+CenterCrop+Normalize: decoding on the CPU instead of %s",
                    clip.device)
        return None
    problem = _probe(clip.device)
    if problem:
        log.warning("JPEG decoding on %s does not work here (%s): decoding on the CPU", clip.device, problem)
        return None
    log.info("decoding JPEGs on %s (torchvision nvJPEG, batched); other formats on the CPU", clip.device)
    return prep


def _probe(device: str) -> str | None:
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, format="JPEG")
    try:
        decode_jpeg([torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)], mode=ImageReadMode.RGB,
                    device=device)
    except (RuntimeError, TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def decode_jpegs(jpegs: list[torch.Tensor], device) -> list[torch.Tensor | None]:
    """uint8 (3, H, W) RGB images on `device`, one batched call; None for each one the decoder refuses."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return list(decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # one bad image fails the whole batch: find it
        return [_decode_one(j, device) for j in jpegs]


def _decode_one(jpeg: torch.Tensor, device) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(jpeg, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return None


def model_inputs(batch: dict, clip, prep: TensorPreprocess, decoder) -> tuple[torch.Tensor | None, dict[int, str]]:
    """The batch's model input on clip.device, rows in order: the workers' preprocessed images and its raw
    JPEGs decoded on the device. Returns (inputs without the failed rows, {row: reason} of the rows whose
    image neither the device decoder nor PIL could decode)."""
    from datapruner.embed.stream import model_input

    n = len(batch["rows"])
    if n == 0:
        return None, {}
    images = None if batch["images"] is None else _as_float(batch["images"].to(clip.device, non_blocking=True), prep)
    if not batch["jpegs"]:
        return images, {}
    out = torch.empty((n, 3, *prep.crop), device=clip.device)
    jpeg_rows = batch["jpeg_rows"]
    others = sorted(set(range(n)) - set(jpeg_rows))
    if others:
        out[others] = images
    decoded = decode_jpegs(batch["jpegs"], clip.device)
    good = [(row, img) for row, img in zip(jpeg_rows, decoded) if img is not None]
    if good:
        out[[row for row, _ in good]] = prep([img for _, img in good])
    failed: dict[int, str] = {}
    for row, img, raw in zip(jpeg_rows, decoded, batch["jpegs"]):
        if img is None:  # PIL decides, as on the CPU path: decoded there, or the same reason recorded
            try:
                pil = decode_image(raw.numpy().tobytes(), decoder.image_size, max_pixels=decoder.max_pixels)
                out[row] = _as_float(model_input(pil, decoder).to(clip.device), prep)
            except UnusableSample as exc:
                failed[row] = str(exc)
    if failed:
        out = out[[i for i in range(n) if i not in failed]]
    return out, failed


def _as_float(images: torch.Tensor, prep: TensorPreprocess) -> torch.Tensor:
    """TensorInput's uint8 crops normalised; PIL's transform's float inputs as they are."""
    return prep.normalised(images) if images.dtype == torch.uint8 else images
