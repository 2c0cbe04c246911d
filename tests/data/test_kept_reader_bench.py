"""bench/kept_reader.py at a small size: the three ways yield the same kept count, and the reader's bytes read
stay within 5 % of the kept bytes while the key filter reads every shard."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_small_and_records_every_way(tmp_path):
    out = tmp_path / "kept_reader.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench/kept_reader.py"), "--shards", "2", "--per-shard", "120",
                           "--image-kb", "4", "--rounds", "1", "--json", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    for result in record["result"]["results"]:
        ways = result["ways"]
        assert {w["samples"] for w in ways.values()} == {result["kept"]} and result["kept"] > 0
        assert result["kept_bytes"] <= ways["KeptSamples (reader)"]["bytes_read"] <= 1.05 * result["kept_bytes"]
        assert ways["webdataset, all sources + key filter"]["bytes_read"] > 2 * result["kept_bytes"]
    assert len(record["tables"][0]["rows"]) == 8
