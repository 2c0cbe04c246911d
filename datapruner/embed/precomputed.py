"""Using embeddings that already exist (LAION / DataComp / clip-retrieval layout) instead of embedding."""

from __future__ import annotations

from pathlib import Path

from datapruner.embed.outputs import count_parts, img_emb_path, metadata_path
from datapruner.io.rundir import RunDir


def link_precomputed(run: RunDir, embeddings_dir: str, shards: list[str]) -> dict:
    """Point the run at `embeddings_dir`; part i must belong to the i-th shard in sorted order."""
    root = Path(embeddings_dir).resolve()
    found = sorted((root / "img_emb").glob("img_emb_*.npy"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if len(found) != len(shards):
        raise ValueError(
            f"{root} holds {len(found)} img_emb parts but the source has {len(shards)} shards: "
            "part i must hold the embeddings of the i-th shard in sorted order"
        )
    run.update_run_json(embeddings_dir=str(root))
    for part in run.part_ids():
        for path in (img_emb_path(run, part), metadata_path(run, part)):
            if not path.exists():
                raise ValueError(f"precomputed embeddings are missing {path} (parts are named by zero-padded shard index)")
    counts = count_parts(run)
    run.update_run_json(counts=counts)
    return counts
