"""Loading an open_clip model (name + pretrained tag | local checkpoint | none) on --device (datapruner/devices.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from datapruner.devices import resolve_device
from datapruner.embed.catalog import MODEL_CONFIGS, pretrained_entry

log = logging.getLogger(__name__)


@dataclass
class ClipModel:
    model: Any
    preprocess: Callable
    name: str  # open_clip's model name, which picks its tokenizer
    device: str
    precision: str
    dim: int
    image_size: int | None  # the vision tower's input side, when it has one

    @cached_property
    def tokenizer(self) -> Callable:
        """Built when text is first embedded: a run whose policy reads no text never pays for it (~0.1 s)."""
        import open_clip

        return open_clip.get_tokenizer(self.name)


def pick_device(requested: str = "auto") -> str:
    """The device the model loads on: --device by the one rule of datapruner/devices.py."""
    return str(resolve_device(requested))


def pick_precision(device: str, requested: str = "auto") -> str:
    """On CUDA: the request, auto being bf16 where the GPU has it, else fp16. On the CPU: bf16 autocast
    where the CPU computes bf16 natively (auto, or asked for), else fp32; fp16 is never used on the CPU."""
    import torch

    if device != "cpu":
        if requested != "auto":
            return requested
        with torch.cuda.device(device):  # cuda:N: that GPU's answer, not GPU 0's
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "fp32":
        return "fp32"
    if cpu_has_bf16():
        if requested == "fp16":
            log.warning("fp16 was asked for on the CPU: embedding in bf16 instead (native on this CPU)")
        else:
            log.info("this CPU computes bf16 natively (%s): embedding with bf16 autocast", cpu_bf16_kind())
        return "bf16"
    log.info("this CPU has no native bf16 (AVX512-BF16, AMX or Arm BF16): embedding in fp32")
    return "fp32"


def cpu_has_bf16() -> bool:
    return cpu_bf16_kind() is not None


def cpu_bf16_kind() -> str | None:
    """The native bf16 instructions torch finds on this CPU (None: none, bf16 would be emulated and slow)."""
    import platform

    import torch

    checks = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
    for name, probe in checks:
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return name
    if platform.machine().lower() in ("aarch64", "arm64"):
        try:  # oneDNN on Arm reports bf16 only where the core has the BF16 extension
            return "Arm BF16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
        except (AttributeError, RuntimeError):
            return None
    return None


def autocast(clip: ClipModel):
    """bf16/fp16 autocast on CUDA, bf16 autocast on a CPU that has it; plain fp32 otherwise."""
    import torch

    if clip.precision == "fp32":
        return contextlib.nullcontext()
    if clip.device == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    dtype = torch.bfloat16 if clip.precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def load_clip(name: str, pretrained: str | None, device: str = "auto", precision: str = "auto",
              seed: int = 0) -> ClipModel:
    """`pretrained` is an open_clip tag, a local checkpoint path, or "none" (random init, offline).

    Random init is seeded, so every process (a rerun, a Ray actor) builds the same model. Weights that
    are neither cached nor downloadable fail in seconds, before torch is imported (weights_reachable).
    """
    tag = None if pretrained in (None, "", "none") else pretrained
    with weights_reachable(name, tag):
        import open_clip
        import torch

        open_clip.add_model_config(MODEL_CONFIGS)
        if name not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {name!r}; see open_clip.list_models()")
        device = pick_device(device)
        precision = pick_precision(device, precision)
        if tag is None:
            torch.manual_seed(seed)
        log.info("loading open_clip %s (pretrained=%s) on %s, %s", name, tag or "random init", device, precision)
        with _without_random_init_warning(tag is None):
            model, _, preprocess = _create_model(name, tag, device)
    model.eval()
    return ClipModel(model, preprocess, name, device, precision, model.visual.output_dim,
                     _input_side(model.visual))


class _RandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _without_random_init_warning(random_init: bool):
    """open_clip warns on the root logger that a model without weights is "initialized randomly": asked
    for (pretrained none), the line above says so already."""
    root, quiet = logging.getLogger(), _RandomInitWarning()
    if random_init:
        root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _create_model(name: str, tag: str | None, device: str):
    """open_clip's model and transforms; a local checkpoint that is not one of `name` is one line."""
    import open_clip

    try:
        return open_clip.create_model_and_transforms(name, pretrained=tag, device=device)
    except CHECKPOINT_ERRORS as exc:
        if tag is None or not Path(tag).expanduser().is_file():
            raise
        raise checkpoint_refused(name, tag, exc) from None


# what loading a local checkpoint raises when it is not one of this model (torch.load with weights_only, the
# default, refuses a pickle that holds more than tensors: unpickling it could run any code)
CHECKPOINT_ERRORS = (pickle.UnpicklingError, RuntimeError, ValueError, KeyError, EOFError, AttributeError,
                     TypeError, ImportError, OSError)


def checkpoint_refused(name: str, tag: str, exc: BaseException):
    """The one line for a local checkpoint that cannot be loaded as `name`'s weights."""
    from datapruner.errors import DataprunerError

    detail = _unpickler_detail(str(exc)) if isinstance(exc, pickle.UnpicklingError) else _first_line(exc)
    if "global" in detail.lower():  # torch's weights-only unpickler met a class or function to import
        why = (f"it holds pickled objects besides tensors, which would run code when loaded, so torch refused it "
               f"({detail}): save the model's state_dict alone, or use a .safetensors file")
    else:
        why = f"it is not a checkpoint of open_clip {name} ({detail})"
    return DataprunerError(f"--pretrained {tag}: {why}")


def _unpickler_detail(text: str) -> str:
    """The line of torch's weights-only refusal that says what it met (its other lines are advice)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = [line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")]
    return (found or lines or ["unreadable"])[0][:200]


def _input_side(visual) -> int | None:
    size = getattr(visual, "image_size", None)
    if isinstance(size, (tuple, list)):
        return max(size)
    return size if isinstance(size, int) else None


# how to run without the hub, for the one-line error when its weights cannot be fetched
OFFLINE_HINT = ("to run offline use --pretrained FILE (a local checkpoint), --pretrained none or "
                "--config configs/offline-demo.yaml (random init, a demo), or set HF_HUB_OFFLINE=1 with the "
                "weights already in the Hugging Face cache (HF_HOME)")
PROBE_TIMEOUT_S = 3.0


@contextlib.contextmanager
def weights_reachable(name: str, tag: str | None):
    """Fail in seconds, with one line saying how to run offline, when `tag`'s weights are neither cached
    nor downloadable (open_clip would retry for a minute, then print pages of tracebacks). Weights in
    the cache load without the network: when the hub does not answer, the load runs in offline mode."""
    from datapruner.errors import DataprunerError

    where = _weights_location(name, tag)
    if where is None:  # random init, a local file, or a tag open_clip itself will refuse
        yield
        return
    url, cached, is_hub = where
    offline = is_hub and _hf_offline()
    what = f"the weights of open_clip {name} (pretrained={tag})"
    if not cached:
        if offline:
            raise DataprunerError(f"{what} are not in the Hugging Face cache (HF_HOME) and HF_HUB_OFFLINE is set: "
                                  f"fill the cache once online, or {OFFLINE_HINT.split(', or set HF_HUB_OFFLINE')[0]}")
        if not reachable(url):
            raise DataprunerError(f"cannot reach {_host(url)} to download {what}: {OFFLINE_HINT}")
    elif is_hub and not offline and not reachable(url):
        log.info("%s is not reachable: loading %s from the cache", _host(url), what)
        with _hf_offline_mode():
            yield
        return
    try:
        yield
    except DataprunerError:
        raise
    except Exception as exc:  # a download that started and then failed
        if cached or not _is_download_error(exc):
            raise
        raise DataprunerError(f"downloading {what} from {_host(url)} failed ({_first_line(exc)}): "
                              f"{OFFLINE_HINT}") from None


HF_WEIGHTS_NAME, HF_SAFE_WEIGHTS_NAME = "open_clip_pytorch_model.bin", "open_clip_model.safetensors"


def _weights_location(name: str, tag: str | None) -> tuple[str, bool, bool] | None:
    """(url to probe, whether the weights are cached, whether on the Hugging Face hub) for a pretrained
    tag, read from open_clip's table without importing it (or torch); None when there is nothing to fetch
    or the table does not say."""
    if tag is None or Path(tag).expanduser().is_file():
        return None
    source = _pretrained_source(name, tag)
    if source is None:
        return None
    hub, url = source
    if hub:
        from huggingface_hub import constants, try_to_load_from_cache

        repo, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        names = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else \
            [filename[:-4] + ".safetensors"] if filename.endswith((".bin", ".pth")) else []
        names.append(filename)
        cached = any(isinstance(try_to_load_from_cache(repo, n), str) for n in names)
        return f"{constants.ENDPOINT}/{repo}/resolve/main/{names[0]}", cached, True
    if url:
        return url, os.path.isfile(os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))), False
    return None


def _pretrained_source(name: str, tag: str) -> tuple[str, str] | None:
    """(hf_hub, url) of open_clip's `_PRETRAINED[name][tag]`, read from its source (embed/catalog.py)."""
    entry = pretrained_entry(name, tag)
    return None if entry is None else (entry.get("hf_hub") or "", entry.get("url") or "")


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether `url`'s server answers a HEAD request within `timeout` seconds (any HTTP status counts;
    proxies from the environment are used). Name resolution included: the probe runs in a thread."""
    import urllib.error
    import urllib.request

    answered = threading.Event()

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            answered.set()
        except urllib.error.HTTPError:
            answered.set()  # the server answered (401, 404, a redirect refused): it is reachable
        except Exception:  # noqa: BLE001 - any other failure: not reachable
            pass

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return answered.is_set()


def _hf_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@contextlib.contextmanager
def _hf_offline_mode():
    """huggingface_hub's offline mode for this load (cache only, no retries against an unreachable hub)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _is_download_error(exc: BaseException) -> bool:
    text = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    return any(s in text for s in ("huggingface_hub", "Failed to download", "urllib", "URLError", "HTTPError",
                                   "Connection", "timed out"))


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
