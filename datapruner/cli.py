"""`datapruner …`: thin typer front over datapruner.api (heavy imports happen inside the commands)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from datapruner.config import Config, load_config

app = typer.Typer(help="Prune image-text WebDataset datasets: embed, cluster, score, select, write.",
                  no_args_is_help=True, add_completion=False)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML preset (configs/*.yaml); flags override it.")
OutOpt = typer.Option(..., "--out", "-o", help="Run directory.")
ModelOpt = typer.Option(None, help="open_clip model name (e.g. ViT-B-32, datapruner-tiny).")
PretrainedOpt = typer.Option(None, help="open_clip pretrained tag, a local checkpoint file, or 'none'.")
BatchOpt = typer.Option(None, "--batch-size", help="Images per model batch.")
WorkersOpt = typer.Option(None, "--num-workers", help="Decode worker processes.")
PipeOpt = typer.Option(None, "--allow-pipe/--no-allow-pipe", help="Allow pipe: sources (runs shell commands).")
EmbeddingsOpt = typer.Option(None, "--embeddings", help="Precomputed embeddings dir (embedding-reader layout): skip embedding.")
KeepOpt = typer.Option(None, "--keep", "-k", help="Fraction of valid samples to keep, in [0, 1].")
MetricOpt = typer.Option(None, help="Metric that orders samples (datapruner.metrics.available()).")
OrderOpt = typer.Option(None, help="hard (keep high scores), easy (keep low scores) or random.")
BudgetOpt = typer.Option(None, help="global, cluster (uniform per-cluster quotas) or a registered budget.")
ClustersOpt = typer.Option(None, "--clusters", help="k for k-means (default: sqrt(N)).")
SeedOpt = typer.Option(None, help="Seed for sampling, k-means and the random metric.")
ShardSizeOpt = typer.Option(None, "--shard-size", help="Samples per pruned output shard.")
RunnerOpt = typer.Option(None, "--runner", help="local or ray.")
RayAddressOpt = typer.Option(None, "--ray-address", help="Ray cluster address (implies --runner ray).")
DeviceOpt = typer.Option(None, "--device", help="auto, cpu or cuda.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")


def _setup(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("root", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(path, **overrides) -> Config:
    if overrides.get("ray_address"):
        overrides["runner"] = "ray"
    try:
        return load_config(path, **overrides)
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None


def _report(title: str, summary: dict) -> None:
    typer.echo(f"\n== {title} ==")
    typer.echo(json.dumps(summary, indent=2, default=str))


def _run(fn, *args, **kwargs):
    """Errors a user can cause become a one-line message and exit code 2, not a traceback."""
    from datapruner.io.shards import SourceError

    try:
        return fn(*args, **kwargs)
    except (SourceError, ValueError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def embed(src: str, out: Path = OutOpt, config: Optional[Path] = ConfigOpt, model: Optional[str] = ModelOpt,
          pretrained: Optional[str] = PretrainedOpt, batch_size: Optional[int] = BatchOpt,
          num_workers: Optional[int] = WorkersOpt, allow_pipe: Optional[bool] = PipeOpt,
          device: Optional[str] = DeviceOpt, runner: Optional[str] = RunnerOpt,
          ray_address: Optional[str] = RayAddressOpt, quiet: bool = QuietOpt):
    """Embed SRC's shards with CLIP into OUT/embeddings (finished shards are skipped on a rerun)."""
    from datapruner import api

    _setup(quiet)
    cfg = _config(config, model=model, pretrained=pretrained, batch_size=batch_size, num_workers=num_workers,
                  allow_pipe=allow_pipe, device=device, runner=runner, ray_address=ray_address)
    _report("embed", _run(api.embed, src, out, cfg, progress=not quiet))


@app.command()
def cluster(run: Path, config: Optional[Path] = ConfigOpt, clusters: Optional[int] = ClustersOpt,
            seed: Optional[int] = SeedOpt, device: Optional[str] = DeviceOpt, quiet: bool = QuietOpt):
    """Fit spherical k-means centroids on RUN's embeddings."""
    from datapruner import api

    _setup(quiet)
    _report("cluster", _run(api.cluster, run, _config(config, clusters=clusters, seed=seed, device=device)))


@app.command()
def score(src: str, keep: Optional[float] = KeepOpt, out: Path = OutOpt, config: Optional[Path] = ConfigOpt,
          metric: Optional[str] = MetricOpt, order: Optional[str] = OrderOpt, budget: Optional[str] = BudgetOpt,
          clusters: Optional[int] = ClustersOpt, model: Optional[str] = ModelOpt,
          pretrained: Optional[str] = PretrainedOpt, batch_size: Optional[int] = BatchOpt,
          num_workers: Optional[int] = WorkersOpt, embeddings: Optional[str] = EmbeddingsOpt,
          allow_pipe: Optional[bool] = PipeOpt, seed: Optional[int] = SeedOpt,
          shard_size: Optional[int] = ShardSizeOpt, device: Optional[str] = DeviceOpt,
          runner: Optional[str] = RunnerOpt, ray_address: Optional[str] = RayAddressOpt, quiet: bool = QuietOpt):
    """Everything: embed → cluster → score → select → write pruned shards to OUT/shards."""
    from datapruner import api

    _setup(quiet)
    cfg = _config(config, keep=keep, metric=metric, order=order, budget=budget, clusters=clusters, model=model,
                  pretrained=pretrained, batch_size=batch_size, num_workers=num_workers, embeddings=embeddings,
                  allow_pipe=allow_pipe, seed=seed, shard_size=shard_size, device=device, runner=runner,
                  ray_address=ray_address)
    summary = _run(api.score, src, out, cfg.keep, cfg, progress=not quiet)
    _report("score", _one_screen(summary))
    typer.echo(f"\nkept {summary['select']['counts']['kept']} of {summary['select']['counts']['valid']} valid samples "
               f"→ {out}/shards ({summary['write']['shards']} shards); manifest: {out}/manifest/keep.parquet")


@app.command()
def select(run: Path, keep: Optional[float] = KeepOpt, config: Optional[Path] = ConfigOpt,
           metric: Optional[str] = MetricOpt, order: Optional[str] = OrderOpt, budget: Optional[str] = BudgetOpt,
           seed: Optional[int] = SeedOpt, runner: Optional[str] = RunnerOpt,
           ray_address: Optional[str] = RayAddressOpt, quiet: bool = QuietOpt):
    """Re-select from RUN's scores (seconds): a new keep fraction or policy, no re-embedding."""
    from datapruner import api

    _setup(quiet)
    cfg = _config(config, keep=keep, metric=metric, order=order, budget=budget, seed=seed, runner=runner,
                  ray_address=ray_address)
    if not _scores_have(run, cfg):
        _run(api.score_samples, run, cfg, progress=not quiet)
    _report("select", _one_screen({"select": _run(api.select, run, cfg.keep, cfg)}))


def _scores_have(run: Path, cfg: Config) -> bool:
    """Whether RUN's score parts already hold every column this policy needs."""
    import pyarrow.parquet as pq

    from datapruner.metrics.step import metrics_needed

    parts = sorted((run / "scores").glob("part-*.parquet"))
    if not parts:
        return False
    have = set(pq.read_schema(parts[0]).names)
    return all(f"score_{m}" in have for m in metrics_needed(cfg))


@app.command()
def write(run: Path, config: Optional[Path] = ConfigOpt, shard_size: Optional[int] = ShardSizeOpt,
          runner: Optional[str] = RunnerOpt, ray_address: Optional[str] = RayAddressOpt, quiet: bool = QuietOpt):
    """Copy RUN's kept samples byte for byte into RUN/shards."""
    from datapruner import api

    _setup(quiet)
    cfg = _config(config, shard_size=shard_size, runner=runner, ray_address=ray_address)
    _report("write", _run(api.write, run, cfg, progress=not quiet))


def _one_screen(summary: dict) -> dict:
    """The summary without per-cluster arrays (they are in manifest/summary.json)."""
    out = dict(summary)
    if "select" in out:
        out["select"] = {k: v for k, v in out["select"].items() if k != "clusters"}
    return out


if __name__ == "__main__":
    app()
