"""A source with duplicates and bad samples, for the report's tests and the README's screenshot.

`write_demo_source(root, base)` writes `base`'s shards (the tests' coloured discs, or the shipped sample
data) plus one shard of exact copies of a few earlier images and of samples that cannot be used (an image
that does not decode, a label that is not an integer), so every section of the report has something to show.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from shardmaker import sample_members, write_shards, write_tar

DEMO_POLICY = ["--filter", "semdedup:fraction=0.2", "--metric", "dbp", "--budget", "dbp"]


def copies_of(shard: Path, count: int) -> list[tuple[str, dict[str, bytes]]]:
    """The first `count` samples of `shard`, under new keys (byte-identical images: SemDeDup's similarity 1)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(shard) as tar:
        for member in tar.getmembers():
            key, _, ext = member.name.partition(".")
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return [(f"copy-of-{key}", members) for key, members in list(samples.items())[:count]]


def bad_samples() -> list[tuple[str, dict[str, bytes]]]:
    good = sample_members(900, 1)
    return [
        ("bad-image-0", {"jpg": b"\xff\xd8 this is not a jpeg", "txt": b"an image that does not decode"}),
        ("bad-image-1", {"png": b"\x89PNG broken", "txt": b"another image that does not decode"}),
        ("bad-label-0", {**good, "cls": b"seven"}),
    ]


def write_demo_source(root: Path, base: Path | None = None, copies: int = 6) -> Path:
    """`root` gets base's shards (or 3 × 20 test samples) and `zz-extra.tar` (copies + bad samples)."""
    root.mkdir(parents=True, exist_ok=True)
    if base is None:
        shards = write_shards(root, n_shards=3, per_shard=20)
    else:
        shards = []
        for path in sorted(Path(base).glob("*.tar")):
            shutil.copyfile(path, root / path.name)
            shards.append(root / path.name)
    write_tar(root / "zz-extra.tar", copies_of(shards[0], copies) + bad_samples())
    return root


