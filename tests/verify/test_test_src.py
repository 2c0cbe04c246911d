"""A held-out --test-src is embedded like the run it is compared with, never with verify's own settings."""

import numpy as np
from conftest import TINY

from datapruner import api
from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.verify import inputs


def test_the_test_shards_are_embedded_with_the_runs_model_and_seed(run_copy, shard_dir, tmp_path):
    test_run = RunDir(run_copy).verify_test_run
    api.embed(str(shard_dir), test_run, Config(**TINY, seed=7), progress=False)  # a stale cache, another space
    split = inputs.test_split(str(shard_dir), run_copy, Config(**TINY, seed=7), "mlp", 32, 3)
    assert RunDir(test_run).read_run_json()["embed"]["inputs"]["seed"] == 0  # the run's, replaced
    direct = tmp_path / "direct"
    api.embed(str(shard_dir), direct, Config(**TINY, seed=0), progress=False)
    expected = np.concatenate([np.load(RunDir(direct).img_emb(p)) for p in RunDir(direct).part_ids()])
    assert np.allclose(split.x, expected, atol=1e-3)
