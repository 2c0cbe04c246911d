"""What embeddings depend on, recorded in run.json, and the refusal to mix two kinds in one RUN.

Re-embedding costs hours, so a changed input is never silently recomputed (nor silently ignored):
the command stops before any work, naming the fields that differ and what to do.
"""

from __future__ import annotations

from pathlib import Path

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir

# bump when decoding or preprocessing changes what the same image embeds to, or which samples are valid
PREPROCESS = "pil-rgb, jpeg draft >= model input side, open_clip preprocess; strict labels, captions, json, names"


def weights_id(pretrained: str) -> str:
    """A tag as it is; a local checkpoint by the sha256 of its content (a renamed file is the same model)."""
    from datapruner.steps import digest_files

    path = Path(pretrained)
    if pretrained not in ("", "none") and path.is_file():
        return f"file sha256:{digest_files([path])}"
    return pretrained


def embed_inputs(cfg: Config) -> dict:
    """Every input the embeddings depend on."""
    if cfg.embeddings:
        from datapruner.embed.precomputed import resolve

        return {"embeddings": str(Path(cfg.embeddings).resolve()), **resolve(cfg).summary(),
                "caption_field": cfg.caption_field, "label_field": cfg.label_field,
                "allow_unsafe_names": cfg.allow_unsafe_names}
    random_init = cfg.pretrained in (None, "", "none")
    return {"model": cfg.model, "pretrained": weights_id(cfg.pretrained or "none"), "precision": cfg.precision,
            "seed": cfg.seed if random_init else None, "preprocess": PREPROCESS,
            "caption_field": cfg.caption_field, "label_field": cfg.label_field, "max_image_pixels": cfg.max_image_pixels,
            "allow_unsafe_names": cfg.allow_unsafe_names, "embeddings": None}


def check(run: RunDir, cfg: Config) -> None:
    """Refuse when this command's embed inputs differ from those some part was already embedded with
    (unless cfg.re_embed)."""
    wanted = embed_inputs(cfg)
    previous = run.read_run_json().get("embed") if run.exists() else None
    if previous and previous["inputs"] != wanted and run.marked_parts("embed") and not cfg.re_embed:
        raise DataprunerError(
            f"{run.root} was embedded with other inputs ({describe_change(previous['inputs'], wanted)}); "
            "use a new --out, or pass --re-embed to replace this run's embeddings")


def record(run: RunDir, cfg: Config) -> None:
    wanted = embed_inputs(cfg)
    from datapruner.steps import token_of

    precomputed = None
    if cfg.embeddings:
        from datapruner.embed.precomputed import resolve

        precomputed = resolve(cfg).to_dict()
    # the run writes its own embeddings from precomputed ones too (embed/precomputed.py): no linked folder
    run.update_run_json(embed={"inputs": wanted, "token": token_of(wanted)}, embeddings_dir=None,
                        precomputed=precomputed)


def describe_change(old: dict, new: dict) -> str:
    names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in names)


def token(ctx, part: str = "") -> str:
    """The embed token of the run (as recorded by the last command that read SRC)."""
    embed = ctx.run.read_run_json().get("embed")
    if not embed:
        from datapruner.steps import NotReady

        raise NotReady("the run has no embed record")
    return embed["token"]
