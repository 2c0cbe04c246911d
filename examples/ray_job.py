"""Prune a dataset on a Ray cluster: the driver of a `ray job submit` (see docs/ray.md).

    ray job submit --address http://HEAD:8265 --working-dir examples --entrypoint-num-gpus 1 -- \\
        python ray_job.py --src "s3://bucket/laion/{00000..41407}.tar" --out /mnt/shared/runs/laion30 \\
        --keep 0.3 --config /mnt/shared/configs/laion-scale.yaml

or straight against a cluster started with `ray start --head` (its token is found the way Ray's own
CLI finds it: ~/.ray/auth_token or RAY_AUTH_TOKEN; no RAY_AUTH_MODE needed):

    python ray_job.py --address HEAD:6379 --src ... --out ... --config ...

Map steps (embed, assign, score, write) run as Ray actors/tasks across the cluster; the barrier steps
(k-means, selection) run here, in the driver. Rerun the same command after a failure: finished
parts are skipped.
"""

from __future__ import annotations

import argparse
import json
import logging


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="shards: dir, brace pattern or fsspec URL (s3://, gs://)")
    parser.add_argument("--out", required=True, help="run directory on a filesystem every node mounts")
    parser.add_argument("--keep", type=float, default=None, help="fraction to keep (default: the config's)")
    parser.add_argument("--config", default=None, help="YAML preset, e.g. configs/laion-scale.yaml")
    parser.add_argument("--address", default=None, help="Ray address, HOST:PORT as `ray start --head` prints it (default: RAY_ADDRESS, set by "
                        "ray job submit)")
    parser.add_argument("--embed-actors", type=int, default=None, help="embed actors (default: one per GPU)")
    parser.add_argument("--gpus-per-actor", type=float, default=None, help="e.g. 0.5: two actors share a GPU")
    return parser.parse_args()


def main() -> None:
    from datapruner import api
    from datapruner.config import load_config
    from datapruner.errors import DataprunerError

    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, runner="ray", ray_address=args.address, keep=args.keep,
                      ray_embed_actors=args.embed_actors, ray_num_gpus_per_actor=args.gpus_per_actor)
    try:
        summary = api.score(args.src, args.out, cfg=cfg, progress=False)
    except DataprunerError as exc:  # e.g. the cluster cannot be reached: one line saying what to set
        raise SystemExit(f"error: {exc}") from None
    counts = summary["select"]["counts"]
    print(json.dumps({"embed": summary["embed"], "kept": counts["kept"], "valid": counts["valid"],
                      "shards": summary["write"]["shards"], "manifest": f"{args.out}/manifest/keep.parquet"}, indent=2))


if __name__ == "__main__":
    main()
