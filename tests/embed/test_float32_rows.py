"""Stored float16 embeddings come back as float32 exactly as numpy converts them, every value and layout."""

import numpy as np

from datapruner.embed.outputs import as_float32, unit_rows


def every_float16() -> np.ndarray:
    return np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(256, 256)


def test_every_float16_value_converts_as_numpy_does():
    x = every_float16()
    assert np.array_equal(as_float32(x), x.astype(np.float32), equal_nan=True)


def test_memmap_slices_and_gathers_convert_to_new_writable_arrays(tmp_path):
    x = every_float16()
    np.save(tmp_path / "e.npy", x)
    stored = np.load(tmp_path / "e.npy", mmap_mode="r")
    for view in (stored[10:20], stored[[3, 1, 200]], stored[:, ::3]):
        out = as_float32(view)
        assert out.flags.writeable and out.dtype == np.float32
        assert np.array_equal(out, np.asarray(view, np.float32), equal_nan=True)


def test_unit_rows_of_float16_are_unit_or_zero():
    x = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float16)
    x[7] = 0
    norms = np.linalg.norm(unit_rows(x), axis=1)
    assert np.allclose(np.delete(norms, 7), 1, atol=1e-6) and norms[7] == 0
