"""The identity of the precomputed embeddings files, so that vectors replaced in place are found.

The embed inputs of a run with --embeddings DIR hold every file of the layout (embeddings, metadata, text)
by its name under DIR, its size and its modification time (`files_now`), so a changed file changes the embed
token and a rerun is refused like a changed model. The index step, which reads each source part, also
records each of its files' sha256 (`identities`, in the footer of RUN/join/index/part-{p}.parquet). As for
the source shards (io/identity.py): the same size and time are trusted without reading; another size is a
change; the same size with another time is decided by hashing the file again (`as_read`), so a file that
was only touched stays the one the run read.
"""

from __future__ import annotations

from pathlib import Path

from datapruner.embed.join import file_info
from datapruner.embed.layouts import Layout, SourcePart
from datapruner.io.identity import DIGEST, current_stat, digest_of
from datapruner.io.rundir import RunDir


def part_files(part: SourcePart) -> list[str]:
    """A source part's files: embeddings, metadata, and text when it is a file of its own."""
    return list(dict.fromkeys(p for p in (part.emb, part.meta, part.text) if p))


def name_of(layout: Layout, path: str) -> str:
    p = Path(path)
    return str(p.relative_to(layout.root)) if p.is_relative_to(layout.root) else p.name


def files_now(layout: Layout) -> dict[str, dict]:
    """{name under DIR: size and modification time} of every file of the layout, now."""
    return {name_of(layout, path): _stat(path) for part in layout.parts for path in part_files(part)}


def _stat(path: str) -> dict:
    try:
        return current_stat(path)
    except OSError as exc:
        return {"unreadable": exc.strerror or type(exc).__name__}


def identities(layout: Layout, part: SourcePart) -> dict[str, dict]:
    """{name: size, time and sha256} of one source part's files, taken by the step that reads it."""
    return {name_of(layout, path): _identity(path) for path in part_files(part)}


def _identity(path: str) -> dict:
    try:
        return {**current_stat(path), DIGEST: digest_of(path)}
    except OSError as exc:  # the step that reads it says what is wrong with it
        return {"unreadable": exc.strerror or type(exc).__name__}


def recorded_digests(run: RunDir) -> dict[str, str]:
    """{name: sha256} as the index step recorded them (empty for a run indexed before they were)."""
    found: dict[str, str] = {}
    recorded = run.precomputed
    for part in Layout.from_dict(recorded).part_ids() if recorded else []:
        path = run.join_index(part)
        files = file_info(path).get("files", {}) if path.exists() else {}
        found.update({name: info[DIGEST] for name, info in files.items() if DIGEST in info})
    return found


def as_read(run: RunDir, layout: Layout, recorded: dict[str, dict], now: dict[str, dict]) -> dict[str, dict]:
    """`now`, where a file of the same size as recorded but another time holds the bytes the run read
    (the sha256 the index step recorded) taken as recorded: it was touched, not changed."""
    touched = [n for n, s in now.items() if n in recorded and s != recorded[n] and s.get("size") == recorded[n].get("size")]
    if not touched:
        return now
    digests, out = recorded_digests(run), dict(now)
    for name in touched:
        if name in digests and _digest(Path(layout.root) / name) == digests[name]:
            out[name] = recorded[name]
    return out


def _digest(path: Path) -> str | None:
    try:
        return digest_of(str(path))
    except OSError:
        return None


def changed_files(old: dict[str, dict], new: dict[str, dict], shown: int = 3) -> str:
    """E.g. "embeddings files changed since the run read them: img_emb/img_emb_0.npy (modified: other
    content), …"."""
    names = sorted(n for n in set(old) | set(new) if old.get(n) != new.get(n))
    words = [f"{n} ({_how(old.get(n), new.get(n))})" for n in names[:shown]]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"embeddings files changed since the run read them: {', '.join(words)}{more}"


def _how(old: dict | None, new: dict | None) -> str:
    if old is None:
        return "new"
    if new is None:
        return "gone"
    if "unreadable" in new:
        return f"cannot be read: {new['unreadable']}"
    if new.get("size") != old.get("size"):
        return f"{new.get('size')} bytes, {old.get('size')} when read"
    return "same size, modified since, other content"
