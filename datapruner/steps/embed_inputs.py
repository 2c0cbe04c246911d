"""What embeddings depend on, recorded in run.json, and the refusal to mix two kinds in one RUN.

The text-tower decision is made here, once: `wants_text` for a new run, `recorded_text` for the parts
still to embed in an existing one; the embed room is told which.

Re-embedding costs hours, so a changed input is never silently recomputed (nor silently ignored):
the command stops before any work, naming the fields that differ and what to do.
"""

from __future__ import annotations

from pathlib import Path

from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.io.rundir import RunDir
from datapruner.steps.contract import Context, NotReady, digest_files, token_of

# bump when decoding or preprocessing changes what the same image embeds to, or which samples are valid
PREPROCESS = "pil-rgb, jpeg draft >= model input side, open_clip preprocess; strict labels, captions, json, names"
# recorded before the full-decode cap was the setting max_full_decode_pixels: the same as its default
LEGACY_PREPROCESS = (PREPROCESS + "; non-jpeg <= 4096^2 px", {"max_full_decode_pixels": 4096 * 4096})


def weights_id(pretrained: str) -> str:
    """A tag as it is; a local checkpoint by the sha256 of its content (a renamed file is the same model)."""
    path = Path(pretrained)
    if pretrained not in ("", "none") and path.is_file():
        return f"file sha256:{digest_files([path])}"
    return pretrained


def embed_inputs(cfg: Config) -> dict:
    """Every input the embeddings depend on."""
    if cfg.embeddings:
        from datapruner.embed.precomputed import resolve

        from datapruner.embed.precomputed_identity import files_now

        return {"embeddings": str(Path(cfg.embeddings).resolve()), **resolve(cfg).summary(),
                "files": files_now(resolve(cfg)), "caption_field": cfg.caption_field,
                "label_field": cfg.label_field, "allow_unsafe_names": cfg.allow_unsafe_names}
    random_init = cfg.pretrained in (None, "", "none")
    return {"model": cfg.model, "pretrained": weights_id(cfg.pretrained or "none"), "precision": cfg.precision,
            "seed": cfg.seed if random_init else None, "preprocess": PREPROCESS,
            "caption_field": cfg.caption_field, "label_field": cfg.label_field, "max_image_pixels": cfg.max_image_pixels,
            "max_full_decode_pixels": cfg.max_full_decode_pixels, "allow_unsafe_names": cfg.allow_unsafe_names,
            "embeddings": None, "text": wants_text(cfg)}


def upgraded(inputs: dict) -> dict:
    """Recorded inputs as this version names them (a run embedded before a setting existed: its value then)."""
    legacy, values = LEGACY_PREPROCESS
    if inputs.get("preprocess") != legacy:
        return inputs
    return {**inputs, "preprocess": PREPROCESS, **values}


# metrics that read text embeddings (PartData.text_emb); a plugin metric says so with `uses_text = True`
TEXT_METRICS = ("clip_score",)


def wants_text(cfg: Config) -> bool:
    """Whether embed runs the text tower: cfg.embed_text when set, else whether a metric the policy or
    cfg.metrics scores reads text embeddings."""
    if cfg.embed_text is not None:
        return cfg.embed_text
    from datapruner.metrics.scoring import metrics_needed

    return any(_uses_text(m) for m in metrics_needed(cfg))


def _uses_text(metric: str) -> bool:
    from datapruner.metrics.registry import get_metric

    try:
        return bool(getattr(get_metric(metric), "uses_text", metric in TEXT_METRICS))
    except DataprunerError:  # an unknown name: the policy check names it where the policy is used
        return metric in TEXT_METRICS


def recorded_text(run: RunDir, cfg: Config) -> bool:
    """Whether this run's embeddings carry text (what embed writes for the parts still to do): the
    recorded inputs' choice, so every part of a run is alike; runs recorded before the choice existed
    embedded text whenever captions existed."""
    embed = run.read_run_json().get("embed") if run.exists() else None
    if not embed:
        return wants_text(cfg)
    return embed["inputs"].get("text", True)


def _covers(previous: dict, wanted: dict) -> bool:
    """The recorded inputs serve this request: equal, or equal but for text the run has and the request
    does not need (text embeddings are never removed for a policy that does not read them)."""
    previous = upgraded(previous)
    if "text" in wanted:
        previous = {"text": True, **previous}  # recorded before the choice existed: text whenever captions
    if previous == wanted:
        return True
    return previous.get("text") is True and wanted.get("text") is False and _without_text(previous) == _without_text(wanted)


def _without_text(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if k != "text"}


def _effective(run: RunDir, cfg: Config) -> tuple[dict, str | None]:
    """The inputs and token to record: the recorded ones when they serve this request and some part is
    embedded with them (so every part, and the embed token, stays as it is), else this command's (None:
    the token of these inputs)."""
    wanted = current_inputs(run, cfg)
    previous = run.read_run_json().get("embed") if run.exists() else None
    if previous and not cfg.re_embed and embedded(run) and _covers(previous["inputs"], wanted):
        return previous["inputs"], previous["token"]
    return wanted, None


def embedded(run: RunDir) -> bool:
    """Whether some part is embedded (marked done). A command that failed before embedding a part (its
    model could not be loaded) leaves only intents: their files are swept, so its inputs pin nothing."""
    return any(run.read_marker("embed", part) is not None for part in run.marked_parts("embed"))


def current_inputs(run: RunDir, cfg: Config) -> dict:
    """This command's embed inputs. With precomputed embeddings, a file only touched since the run read it
    (the same bytes) counts as unchanged, and a run recorded before the files' identities were is not
    checked against them."""
    wanted = embed_inputs(cfg)
    previous = run.read_run_json().get("embed") if run.exists() else None
    if "files" not in wanted or not previous:
        return wanted
    recorded = previous["inputs"].get("files")
    if recorded is None:
        return {k: v for k, v in wanted.items() if k != "files"}
    from datapruner.embed.precomputed import resolve
    from datapruner.embed.precomputed_identity import as_read

    return {**wanted, "files": as_read(run, resolve(cfg), recorded, wanted["files"])}


def check(run: RunDir, cfg: Config) -> None:
    """Refuse when this command's embed inputs differ from those some part was already embedded with
    (unless cfg.re_embed)."""
    wanted = current_inputs(run, cfg)
    previous = run.read_run_json().get("embed") if run.exists() else None
    if previous and not _covers(previous["inputs"], wanted) and embedded(run) and not cfg.re_embed:
        old = upgraded(previous["inputs"])
        if {**old, "text": True} == wanted and not old.get("text", True):
            raise DataprunerError(
                f"{run.root} was embedded without text embeddings (its policy did not read them), and this "
                "policy's metrics need them (clip_score): pass --re-embed to embed it again with text, or use "
                "a new --out (set embed_text: true to embed text whatever the policy)")
        raise DataprunerError(
            f"{run.root} was embedded with other inputs ({describe_change(old, wanted)}); "
            "use a new --out, or pass --re-embed to replace this run's embeddings")


def record(run: RunDir, cfg: Config) -> None:
    wanted, token = _effective(run, cfg)

    precomputed = None
    if cfg.embeddings:
        from datapruner.embed.precomputed import resolve

        precomputed = resolve(cfg).to_dict()
    # the run writes its own embeddings from precomputed ones too (embed/precomputed.py): no linked folder
    run.update_run_json(embed={"inputs": wanted, "token": token or new_token(run, cfg, wanted)}, embeddings_dir=None,
                        precomputed=precomputed)


def new_token(run: RunDir, cfg: Config, inputs: dict) -> str:
    """The token of these inputs; with --re-embed, of the shards' sizes and stamps now as well, so that a shard
    that changed since it was embedded is embedded again (io/identity.py), and everything after it."""
    if not cfg.re_embed:
        return token_of(inputs)
    from datapruner.io.identity import source_stamps

    return token_of(inputs, source_stamps(run.shards()))


def describe_change(old: dict, new: dict) -> str:
    names = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if "embeddings" in names:
        names = [k for k in names if k != "files"]  # another folder: its files differ as a matter of course
    return "; ".join(_change(k, old.get(k), new.get(k)) for k in names)


def _change(name: str, old, new) -> str:
    if name == "files" and isinstance(old, dict) and isinstance(new, dict):
        from datapruner.embed.precomputed_identity import changed_files

        return changed_files(old, new)
    return f"{name}: {old!r} → {new!r}"


def token(ctx: Context, part: str = "") -> str:
    """The embed token of the run (as recorded by the last command that read SRC)."""
    embed = ctx.run.read_run_json().get("embed")
    if not embed:
        raise NotReady("the run has no embed record")
    return embed["token"]
