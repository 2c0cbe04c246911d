"""The embed stage: index, scan and join (precomputed embeddings only) and embed.

With --embeddings DIR the index, scan and join steps match its rows to the shards' samples (the external
hash join of embed/join.py) and embed writes the run's own parts from the matches (embed/precomputed.py);
without it they have no parts, and embed runs the model over the shards (embed/embedding.py). Every step
of the stage has the embed token: the inputs recorded in run.json (steps/embed_inputs.py).
"""

from __future__ import annotations

from datapruner.config import Config
from datapruner.io.rundir import RunDir
from datapruner.steps.contract import RUNNING, Context, Step, input_shards
from datapruner.steps.embed_inputs import embed_inputs, recorded_text, token


def layout_of(ctx: Context):
    from datapruner.embed.layouts import Layout

    recorded = ctx.run.precomputed if ctx.cfg.embeddings else None
    return Layout.from_dict(recorded) if recorded else None


def sample_fields(cfg: Config):
    from datapruner.embed.fields import SampleFields

    return SampleFields(cfg.caption_field, cfg.label_field, cfg.max_image_pixels, cfg.allow_unsafe_names,
                        cfg.max_full_decode_pixels)


def inputs(cfg: Config) -> tuple:
    return (embed_inputs(cfg),)


# index: the precomputed parts ---------------------------------------------------------------------------

def index_parts(ctx: Context) -> list[str]:
    """One part per file of the precomputed embeddings, {p} (with --embeddings only)."""
    layout = layout_of(ctx)
    return layout.part_ids() if layout else []


def run_index(ctx: Context, parts: list[str], state=None):
    from datapruner.embed.join import index_part
    from datapruner.embed.precomputed_identity import identities

    layout = layout_of(ctx)
    for part in parts:
        yield part, index_part(ctx.run, layout, part, identities(layout, layout.parts[int(part)]))


# scan: the input shards ---------------------------------------------------------------------------------

def scan_parts(ctx: Context) -> list[str]:
    """One part per input shard, {i} (with --embeddings only)."""
    return ctx.run.part_ids() if layout_of(ctx) else []


def run_scan(ctx: Context, parts: list[str], state=None):
    from datapruner.embed.join import scan_shard

    layout, fields = layout_of(ctx), sample_fields(ctx.cfg)
    for part in parts:
        yield part, scan_shard(ctx.run, fields, layout, part)


# join: one hash bucket of both sides ---------------------------------------------------------------------

def join_parts(ctx: Context) -> list[str]:
    """One part per hash bucket, {b} (with --embeddings only)."""
    layout = layout_of(ctx)
    return layout.bucket_ids() if layout else []


def run_join(ctx: Context, parts: list[str], state=None):
    from datapruner.embed.join import join_bucket

    layout = layout_of(ctx)
    for part in parts:
        yield part, join_bucket(ctx.run, layout, int(part), part)


# embed: the run's own parts, one per input shard --------------------------------------------------------

def embed_outputs(run: RunDir, part: str) -> list:
    own = run.own_embeddings
    return [run.img_emb(part, own), run.text_emb(part, own), run.metadata(part, own), run.errors(part)]


def shards_per_call(cfg: Config) -> int:
    """Shards per call on a distributed runner (enough to keep an actor's decode workers busy)."""
    return cfg.ray_shards_per_call or max(1, cfg.num_workers)


def load_model(ctx: Context):
    """The model, loaded once per process or Ray actor (none for precomputed embeddings)."""
    from datapruner.embed.model import load_clip

    cfg = ctx.cfg
    if cfg.embeddings:
        return None
    return load_clip(cfg.model, cfg.pretrained, cfg.device, cfg.precision, cfg.seed)


def run_embed(ctx: Context, parts: list[str], state):
    cfg = ctx.cfg
    if cfg.embeddings:
        from datapruner.embed.precomputed import build_part

        layout = layout_of(ctx)
        for part in parts:
            yield part, build_part(ctx.run, layout, part)
        return
    from datapruner.embed.embedding import embed_parts

    yield from embed_parts(ctx.run, parts, state, sample_fields(cfg), recorded_text(ctx.run, cfg), cfg.batch_size,
                           cfg.num_workers, ctx.progress)


def _join_outputs(kind: str):
    def outputs(run: RunDir, part: str) -> list:
        return {"index": [run.join_index(part)],
                "scan": [run.join_samples(part), run.join_scan_errors(part), run.join_sample_index(part)],
                "join": [run.join_matches(part)]}[kind]
    return outputs


# the embed inputs are recorded before any step runs; these only choose how the work runs
EMBED_RUNNING = {**RUNNING, "batch_size": "how many images a forward pass takes (the same rows)",
                 "num_workers": "decode processes beside a GPU model",
                 "ray_shards_per_call": "shards per Ray actor call", "ray_embed_actors": "Ray actors",
                 "ray_num_gpus_per_actor": "an actor's GPUs", "ray_num_cpus_per_actor": "an actor's CPUs",
                 "embeddings_layout": "recorded with the layout (run.json precomputed)",
                 "join_key": "recorded with the layout", "embeddings_column": "recorded with the layout"}

STEPS = [
    Step("index", "map", "embed", index_parts, token, _join_outputs("index"), run_index, inputs=inputs,
         untokened=EMBED_RUNNING),
    Step("scan", "map", "embed", scan_parts, token, _join_outputs("scan"), run_scan, inputs=inputs,
         untokened=EMBED_RUNNING),
    Step("join", "map", "embed", join_parts, token, _join_outputs("join"), run_join, after=("index", "scan"),
         inputs=inputs, untokened=EMBED_RUNNING),
    Step("embed", "map", "embed", input_shards, token, embed_outputs, run_embed, after=("join",), setup=load_model,
         batch=shards_per_call, inputs=inputs, untokened=EMBED_RUNNING),
]
