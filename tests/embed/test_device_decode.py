"""The GPU decode path (raw JPEGs decoded by torchvision, open_clip's preprocessing on tensors) against the
PIL path, run here on CPU tensors; on a CUDA machine the `gpu` tests run it on the device."""

import io
import logging

import numpy as np
import pytest
import torch
from conftest import TINY
from PIL import Image
from shardmaker import sample_members, write_shards, write_tar

from datapruner import api
from datapruner.config import Config
from datapruner.embed.device_decode import (ModelInputs, TensorInput, TensorPreprocess, decode_jpegs, jpeg_preprocess_on,
                                            model_inputs, worker_preprocess)
from datapruner.embed.model import load_clip
from datapruner.embed.stream import Decoder, ShardTask, collated, shard_batches

no_gpu = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def clip():
    return load_clip("datapruner-tiny", "none", "cpu", "fp32")


def _photo(w: int, h: int, seed: int) -> bytes:
    """A smooth picture with edges (what resampling differences show on), as a JPEG."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    img = np.stack([np.sin(xx * rng.uniform(3, 9)), np.cos(yy * rng.uniform(3, 9)), np.sin((xx + yy) * 5)], -1)
    img = ((img + 1) * 127.5).astype(np.uint8)
    img[h // 3: h // 2, w // 4: w // 2] = rng.integers(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """jpg/png/webp samples from shardmaker, JPEGs of several sizes, a CMYK JPEG and one whose body is cut off."""
    samples = [(f"s{i:03d}", sample_members(i, i % 4, ["jpg", "png", "webp"][i % 3])) for i in range(9)]
    for i, (w, h) in enumerate([(300, 200), (97, 131), (640, 480), (33, 40)]):
        samples.append((f"p{i:03d}", {"jpg": _photo(w, h, i), "txt": b"a photo"}))
    buf = io.BytesIO()
    Image.new("CMYK", (50, 60), (10, 200, 30, 5)).save(buf, format="JPEG")
    samples.append(("cmyk", {"jpg": buf.getvalue()}))
    cut = _photo(200, 200, 9)
    samples.append(("cut0", {"jpg": cut[: len(cut) // 3]}))
    return write_tar(tmp_path_factory.mktemp("device-decode") / "00000.tar", samples)


def _batches(shard, clip, raw: bool, preprocess=None) -> list[dict]:
    decoder = Decoder(preprocess or clip.preprocess, clip.image_size, jpegs_raw=raw)
    return decoder, [collated(b) for b in shard_batches(ShardTask(0, str(shard)), decoder, 8)]


def _embed(clip, images: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        x = clip.model.encode_image(images).float()
    return (x / x.norm(dim=-1, keepdim=True)).numpy()


def test_the_tensor_transform_is_read_from_open_clips_preprocess(clip):
    prep = TensorPreprocess.of(clip.preprocess)
    assert prep.size == 32 and prep.crop == (32, 32) and prep.mean[0] == pytest.approx(0.48145466)
    assert TensorPreprocess.of(lambda img: img) is None  # a transform it does not know: the CPU path


def test_the_cpu_decode_path_is_chosen_on_the_cpu(clip):
    assert jpeg_preprocess_on(clip) is None


@pytest.mark.parametrize("workers_preprocess", ["pil", "tensor"])
def test_raw_jpeg_path_gives_the_pil_paths_embeddings_and_errors(shard, clip, workers_preprocess):
    """The workers' other formats come as PIL's float inputs or as TensorInput's uint8 crops."""
    prep = TensorPreprocess.of(clip.preprocess)
    dec_pil, pil = _batches(shard, clip, raw=False)
    preprocess = worker_preprocess(clip.preprocess) if workers_preprocess == "tensor" else None
    dec_raw, raw = _batches(shard, clip, raw=True, preprocess=preprocess)
    assert sum(len(b["jpeg_rows"]) for b in raw) >= 8  # the RGB JPEGs went through the tensor path
    pil_keys, raw_keys, a, b, raw_errors = [], [], [], [], []
    for bp, br in zip(pil, raw):
        pil_keys += [r["key"] for r in bp["rows"]]
        if bp["images"] is not None:
            a.append(_embed(clip, bp["images"]))
        images, failed = model_inputs(br, clip, prep, dec_raw)
        raw_keys += [r["key"] for i, r in enumerate(br["rows"]) if i not in failed]
        raw_errors += [br["rows"][i]["key"] for i in failed] + [e["key"] for e in br["errors"]]
        if images is not None:
            b.append(_embed(clip, images))
    pil_errors = [e["key"] for bp in pil for e in bp["errors"]]
    assert raw_keys == pil_keys and sorted(raw_errors) == sorted(pil_errors)
    assert "cmyk" in pil_keys  # decoded by PIL on both paths
    a, b = np.concatenate(a), np.concatenate(b)
    cosine = np.sum(a * b, axis=1)
    assert a.shape == b.shape and cosine.min() > 0.99, cosine.min()


def test_a_jpeg_the_decoder_refuses_is_decoded_by_pil_or_has_pils_reason():
    good = torch.frombuffer(bytearray(_photo(64, 48, 1)), dtype=torch.uint8)
    broken = torch.frombuffer(bytearray(b"\xff\xd8\xff\xe0 not really a jpeg"), dtype=torch.uint8)
    out = decode_jpegs([good, broken, good], "cpu")
    assert out[1] is None and out[0].shape == out[2].shape == (3, 48, 64) and out[0].dtype == torch.uint8


@pytest.mark.gpu
@pytest.mark.skipif(no_gpu, reason="needs a CUDA GPU")
def test_gpu_jpeg_decode_matches_cpu_tensors():
    jpegs = [torch.frombuffer(bytearray(_photo(w, h, i)), dtype=torch.uint8)
             for i, (w, h) in enumerate([(300, 200), (97, 131), (640, 480)])]
    for cpu, gpu in zip(decode_jpegs(jpegs, "cpu"), decode_jpegs(jpegs, "cuda")):
        assert gpu.is_cuda and gpu.shape == cpu.shape
        assert (gpu.cpu().float() - cpu.float()).abs().mean() < 2.0  # nvJPEG's IDCT vs libjpeg's


@pytest.mark.gpu
@pytest.mark.skipif(no_gpu, reason="needs a CUDA GPU")
def test_gpu_embed_decodes_jpegs_on_the_gpu_and_agrees_with_the_cpu(tmp_path, caplog):
    src = tmp_path / "src"
    write_shards(src, n_shards=2, per_shard=12)
    runs = {}
    for device in ("cpu", "cuda"):
        runs[device] = tmp_path / device
        with caplog.at_level(logging.INFO):
            api.embed(str(src), runs[device], Config(**{**TINY, "device": device, "num_workers": 1}), progress=False)
    assert "decoding JPEGs on cuda" in caplog.text
    for i in range(2):
        a = np.load(runs["cpu"] / f"embeddings/img_emb/img_emb_{i}.npy").astype(np.float32)
        b = np.load(runs["cuda"] / f"embeddings/img_emb/img_emb_{i}.npy").astype(np.float32)
        assert a.shape == b.shape and np.min(np.sum(a * b, axis=1)) > 0.98


def test_cpu_workers_preprocess_on_tensors_as_pils_transform_would(shard, clip):
    tensor = worker_preprocess(clip.preprocess)
    inputs = ModelInputs(tensor)
    assert isinstance(tensor, TensorInput)
    assert worker_preprocess(lambda img: img) is not None  # an unknown transform is kept as it is
    pil_batches = [collated(b) for b in shard_batches(ShardTask(0, str(shard)), Decoder(clip.preprocess, 32), 8)]
    tensor_batches = [collated(b) for b in shard_batches(ShardTask(0, str(shard)), Decoder(tensor, 32), 8)]
    for bp, bt in zip(pil_batches, tensor_batches):
        assert [r["key"] for r in bp["rows"]] == [r["key"] for r in bt["rows"]]
        assert [e["key"] for e in bp["errors"]] == [e["key"] for e in bt["errors"]]
        if bp["images"] is None:
            continue
        assert bt["images"].dtype == torch.uint8  # crops: the model's loop normalises the batch
        normalised = inputs(bt["images"], "cpu")
        levels = (bp["images"] - normalised).abs() * torch.tensor(tensor.prep.std).view(1, 3, 1, 1) * 255
        assert levels.max() <= 1.01 and levels.mean() < 0.05  # at most one intensity level apart, rarely
        cosine = np.sum(_embed(clip, bp["images"]) * _embed(clip, normalised), axis=1)
        assert cosine.min() > 0.999, cosine.min()


def test_model_inputs_reuse_one_buffer_and_pass_float_inputs_through(clip):
    tensor = TensorPreprocess.of(clip.preprocess)
    inputs = ModelInputs(TensorInput(tensor))
    crops = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    first = inputs(crops, "cpu")
    assert torch.equal(first, tensor.normalised(crops))
    smaller = inputs(crops[:3], "cpu")  # a shard's last batch
    assert smaller.data_ptr() == first.data_ptr() and torch.equal(smaller, tensor.normalised(crops[:3]))
    floats = torch.rand(2, 3, 32, 32)
    assert inputs(floats, "cpu") is floats  # PIL's transform made them already
