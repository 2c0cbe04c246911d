"""max_full_decode_pixels: the documented cap on images decoded at full size (all but JPEG), an embed input.

The shards hold 40×40 JPEG, PNG and WebP images (tests/shardmaker.py); a cap of 1000 pixels makes the PNGs
and WebPs too large while the JPEGs, which decode at a reduced scale, stay valid.
"""

import json

import pyarrow.parquet as pq
import pytest
from conftest import TINY
from shardmaker import write_shards

from datapruner import api
from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir
from datapruner.steps.embed_inputs import LEGACY_PREPROCESS, PREPROCESS

CFG = Config(**TINY)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixel-shards")
    write_shards(root, n_shards=1, per_shard=9)  # keys 0..8: jpg, png, webp in turn
    return root


def _errors(run) -> dict[str, str]:
    table = pq.read_table(run / "errors/part-0.parquet")
    return dict(zip(table.column("key").to_pylist(), table.column("reason").to_pylist()))


def test_a_lower_cap_refuses_pngs_and_webps_naming_the_setting_and_keeps_jpegs(shards, tmp_path):
    run = tmp_path / "run"
    api.embed(str(shards), run, CFG.replace(max_full_decode_pixels=1000), progress=False)
    errors = _errors(run)
    assert sorted(errors) == [f"{i:06d}" for i in range(9) if i % 3]  # every png and webp, no jpeg
    assert errors["000001"] == ("image too large: PNG of 40×40 = 1600 pixels > max_full_decode_pixels 1000 "
                                "(formats other than JPEG are decoded at full size: raise max_full_decode_pixels "
                                "to keep it)")
    assert errors["000002"].startswith("image too large: WEBP of 40×40")
    with pytest.raises(DataprunerError, match="max_full_decode_pixels: 1000 → 16777216.*--re-embed"):
        api.embed(str(shards), run, CFG, progress=False)  # refused, never mixed with the default's parts


def test_a_run_recorded_before_the_setting_existed_is_served_as_it_was(shards, tmp_path):
    run = tmp_path / "run"
    first = api.embed(str(shards), run, CFG, progress=False)
    assert first["embed"]["parts_reused"] == 0
    rd = RunDir(run)
    embed = rd.read_run_json()["embed"]
    assert embed["inputs"]["preprocess"] == PREPROCESS
    old = {k: v for k, v in embed["inputs"].items() if k != "max_full_decode_pixels"}
    rd.update_run_json(embed={**embed, "inputs": {**old, "preprocess": LEGACY_PREPROCESS[0]}})
    again = api.embed(str(shards), run, CFG, progress=False)
    assert again["embed"]["parts_reused"] == 1  # the default is the cap it was embedded with
    recorded = json.loads((run / "run.json").read_text())["embed"]
    assert recorded["token"] == embed["token"] and recorded["inputs"]["preprocess"] == LEGACY_PREPROCESS[0]
    with pytest.raises(DataprunerError, match="max_full_decode_pixels: 16777216 → 1000"):
        api.embed(str(shards), run, CFG.replace(max_full_decode_pixels=1000), progress=False)
