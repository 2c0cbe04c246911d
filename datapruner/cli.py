"""`datapruner …`: thin typer front over datapruner.api (heavy imports happen inside the commands)."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from datapruner.config import Config, load_config
from datapruner.cli_errors import print_error, user_errors
from datapruner.cli_index import index as _index
from datapruner.cli_parse import alpha as _alpha
from datapruner.cli_parse import csv as _csv
from datapruner.cli_parse import filters as _filters
from datapruner.cli_parse import with_metric_options as _with_metric_options
from datapruner.cli_logging import cli_logging
from datapruner.errors import DataprunerError
from datapruner.summary_text import one_screen, summary_lines, verify_lines

# click's plain help: full option names and their defaults at any width (rich's tables cut names at 80 columns)
app = typer.Typer(help="Prune image-text WebDataset datasets: embed, cluster, score, select, write.",
                  no_args_is_help=True, add_completion=True, rich_markup_mode=None)


def _opt(name: str, *flags: str, help: str, shown: str | None = None):
    """An option for Config field `name`: None when not given (config files apply), and --help shows the
    field's default (or `shown`)."""
    default = getattr(Config, name, None)
    return typer.Option(None, *flags, help=help, show_default=shown or ("none" if default is None else str(default)))


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML preset (configs/*.yaml), repeatable: a later file "
                         "overrides an earlier one; files override the defaults shown here, flags override files.")
OutOpt = typer.Option(..., "--out", "-o", help="Run directory.")
ModelOpt = _opt("model", help="open_clip model name (e.g. ViT-B-32, datapruner-tiny).")
PretrainedOpt = _opt("pretrained", help="open_clip pretrained tag, a local checkpoint file, or 'none'.")
PrecisionOpt = _opt("precision", "--precision", help="auto, bf16, fp16 or fp32 (auto: bf16 where the GPU or CPU "
                    "computes it natively, else fp16 on a GPU, fp32 on a CPU).")
BatchOpt = _opt("batch_size", "--batch-size", help="Images per model batch.")
WorkersOpt = _opt("num_workers", "--num-workers", help="Decode worker processes beside a GPU model (on the CPU, "
                  "decode takes every core in turns with the model).")
PipeOpt = typer.Option(None, "--allow-pipe/--no-allow-pipe", help="Allow pipe: sources (runs shell commands).")
ReEmbedOpt = typer.Option(False, "--re-embed", help="Replace RUN's embeddings when the model or another embed input "
                          "changed (otherwise such a rerun is refused).")
EmbeddingsOpt = typer.Option(None, "--embeddings", help="Precomputed embeddings dir (clip-retrieval / embedding-reader, "
                             "LAION or DataComp layout, found from the files): skip embedding.")
LayoutOpt = _opt("embeddings_layout", "--embeddings-layout", help="auto, embedding-reader, laion or datacomp.")
JoinKeyOpt = _opt("join_key", "--join-key", help="Column joining embeddings rows to shard samples: auto, key, "
                  "image_path, uid or url.")
EmbColumnOpt = _opt("embeddings_column", "--embeddings-column", help="DataComp npz array to use (e.g. l14_img).",
                    shown="the only image array")
KeepOpt = _opt("keep", "--keep", "-k", help="Fraction of valid samples to keep, in [0, 1].")
MetricOpt = _opt("metric", help="Metric that orders samples (datapruner.metrics.available()).")
OrderOpt = _opt("order", help="hard (keep high scores), easy (keep low scores) or random.")
BudgetOpt = _opt("budget", help="global, cluster (uniform per-cluster quotas) or a registered budget.")
ClustersOpt = _opt("clusters", "--clusters", help="k for k-means.", shown="sqrt(N)")
SeedOpt = _opt("seed", help="Seed for sampling, k-means and the random metric.")
WithEmbeddingsOpt = _opt("with_embeddings", "--with-embeddings/--without-embeddings",
                         help="Add each sample's stored embeddings as {key}.img_emb.npy (and .txt_emb.npy).")
ShardSizeOpt = _opt("shard_size", "--shard-size", help="Samples per pruned output shard.")
RunnerOpt = _opt("runner", "--runner", help="local or ray.")
RayAddressOpt = _opt("ray_address", "--ray-address", help="Ray cluster address (implies --runner ray).")
DeviceOpt = _opt("device", "--device", help="auto, cpu or cuda.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="datapruner's own warnings and errors only: no INFO lines, "
                        "no progress, nothing from other libraries below an error.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Debug lines, and a traceback with every error.")
JsonOpt = typer.Option(False, "--json", help="Print the summary as JSON (for machines) instead of for people.")
FilterOpt = typer.Option(None, "--filter", help="Filter before the budget, repeatable, in order: NAME:KEY=VALUE[,...], "
                         "e.g. semdedup:eps=0.05, semdedup:fraction=0.2, clip_score:threshold=0.2, el2n:offset=0.05. "
                         "Replaces the config file's filters.", show_default="none")
MetricOptionOpt = typer.Option(None, "--metric-option", help="Metric options, repeatable: NAME:KEY=VALUE[,...], "
                               "e.g. dbp:tau=0.05,neighbours=10 or el2n:models=2. Merged over the config file's.")


def _config(paths, run: Path | None = None, embeds: bool = False, **overrides) -> Config:
    """Defaults, then (for a command on an existing RUN) what it inherits from the run's recorded config
    (config.inherited: the embed inputs and the layout, never the policy or a permission), then the files
    in order (a later one overrides an earlier one), then flags. The embed inputs stay as recorded, unless
    the command `embeds` (verify --src: what differs is then refused by the embed check)."""
    from datapruner.config import inherited, with_recorded_embed_inputs
    from datapruner.io.rundir import RunDir

    if overrides.get("ray_address"):
        overrides["runner"] = "ray"
    recorded = RunDir(run).read_run_json().get("config") if run is not None and RunDir(run).exists() else None
    cfg = load_config(list(paths or []), base=inherited(recorded), **overrides)
    return cfg if embeds or recorded is None else with_recorded_embed_inputs(cfg, recorded)


_state = {"started": 0.0}  # when the running command started (its summary says how long it took)


def _one_line_errors(command):
    """Everything a command does (options, config file, the run) reports a user's error as one line;
    logging follows -q/-v (given before or after the command name); the command's time is measured."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        flags = _global_flags()
        kwargs["quiet"] = bool(kwargs.get("quiet") or flags.get("quiet"))
        kwargs["verbose"] = bool(kwargs.get("verbose") or flags.get("verbose"))
        before = dict(_state)
        _state.update(started=time.perf_counter())
        try:
            with cli_logging(kwargs["quiet"], kwargs["verbose"]), user_errors(kwargs["verbose"]):
                return command(*args, **kwargs)
        finally:
            _state.update(before)
    return wrapper


def _global_flags() -> dict:
    """-q/-v given before the command name (the app callback keeps them in the root context's obj)."""
    import importlib

    package = typer.Context.__mro__[1].__module__.rsplit(".", 1)[0]  # click, or typer's vendored copy
    ctx = importlib.import_module(f"{package}.globals").get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, dict) else {}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"datapruner {package_version()}")
        raise typer.Exit()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("datapruner")
    except PackageNotFoundError:
        from datapruner import __version__

        return __version__


@app.callback()
def _main(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print datapruner's version and exit."),
          quiet: bool = QuietOpt, verbose: bool = VerboseOpt):
    """Prune image-text WebDataset datasets: embed, cluster, score, select, write."""
    ctx.obj = {"quiet": quiet, "verbose": verbose}


@app.command()
@_one_line_errors
def embed(src: str, out: Path = OutOpt, config: Optional[list[Path]] = ConfigOpt, model: Optional[str] = ModelOpt,
          pretrained: Optional[str] = PretrainedOpt, precision: Optional[str] = PrecisionOpt,
          batch_size: Optional[int] = BatchOpt, num_workers: Optional[int] = WorkersOpt,
          allow_pipe: Optional[bool] = PipeOpt, device: Optional[str] = DeviceOpt, runner: Optional[str] = RunnerOpt,
          ray_address: Optional[str] = RayAddressOpt, re_embed: bool = ReEmbedOpt,
          embeddings: Optional[str] = EmbeddingsOpt, embeddings_layout: Optional[str] = LayoutOpt,
          join_key: Optional[str] = JoinKeyOpt, embeddings_column: Optional[str] = EmbColumnOpt, quiet: bool = QuietOpt,
          verbose: bool = VerboseOpt, as_json: bool = JsonOpt):
    """Embed SRC's shards with CLIP into OUT/embeddings (finished shards are skipped on a rerun), or join
    precomputed --embeddings to them."""
    from datapruner import api

    cfg = _config(config, model=model, pretrained=pretrained, precision=precision, batch_size=batch_size,
                  num_workers=num_workers, allow_pipe=allow_pipe, device=device, runner=runner, ray_address=ray_address, re_embed=re_embed,
                  embeddings=embeddings, embeddings_layout=embeddings_layout, join_key=join_key,
                  embeddings_column=embeddings_column)
    _finish("embed", api.embed(src, out, cfg, progress=not quiet), out, as_json)


@app.command()
@_one_line_errors
def cluster(run: Path, config: Optional[list[Path]] = ConfigOpt, clusters: Optional[int] = ClustersOpt,
            seed: Optional[int] = SeedOpt, device: Optional[str] = DeviceOpt, quiet: bool = QuietOpt,
            verbose: bool = VerboseOpt, as_json: bool = JsonOpt):
    """Fit spherical k-means centroids on RUN's embeddings."""
    from datapruner import api

    cfg = _config(config, run, clusters=clusters, seed=seed, device=device)
    _finish("cluster", api.cluster(run, cfg), run, as_json)


@app.command()
@_one_line_errors
def score(src: str, keep: Optional[float] = KeepOpt, out: Path = OutOpt, config: Optional[list[Path]] = ConfigOpt,
          metric: Optional[str] = MetricOpt, order: Optional[str] = OrderOpt, budget: Optional[str] = BudgetOpt,
          clusters: Optional[int] = ClustersOpt, model: Optional[str] = ModelOpt,
          pretrained: Optional[str] = PretrainedOpt, precision: Optional[str] = PrecisionOpt,
          batch_size: Optional[int] = BatchOpt, num_workers: Optional[int] = WorkersOpt,
          embeddings: Optional[str] = EmbeddingsOpt,
          embeddings_layout: Optional[str] = LayoutOpt, join_key: Optional[str] = JoinKeyOpt,
          embeddings_column: Optional[str] = EmbColumnOpt,
          allow_pipe: Optional[bool] = PipeOpt, seed: Optional[int] = SeedOpt,
          shard_size: Optional[int] = ShardSizeOpt, device: Optional[str] = DeviceOpt,
          runner: Optional[str] = RunnerOpt, ray_address: Optional[str] = RayAddressOpt,
          filters: Optional[list[str]] = FilterOpt, metric_options: Optional[list[str]] = MetricOptionOpt,
          re_embed: bool = ReEmbedOpt, quiet: bool = QuietOpt,
          verbose: bool = VerboseOpt, as_json: bool = JsonOpt):
    """Everything, end to end (every step: embed → cluster → assign → fit → score → select → plan → write → report)."""
    from datapruner import api

    cfg = _config(config, keep=keep, metric=metric, order=order, budget=budget, clusters=clusters, model=model,
                  pretrained=pretrained, precision=precision, batch_size=batch_size, num_workers=num_workers,
                  embeddings=embeddings,
                  embeddings_layout=embeddings_layout, join_key=join_key, embeddings_column=embeddings_column,
                  allow_pipe=allow_pipe, seed=seed, shard_size=shard_size, device=device, runner=runner,
                  ray_address=ray_address, filters=_filters(filters), re_embed=re_embed)
    cfg = _with_metric_options(cfg, metric_options)
    _finish("score", api.score(src, out, cfg.keep, cfg, progress=not quiet), out, as_json)


@app.command()
@_one_line_errors
def select(run: Path, keep: Optional[float] = KeepOpt, config: Optional[list[Path]] = ConfigOpt,
           metric: Optional[str] = MetricOpt, order: Optional[str] = OrderOpt, budget: Optional[str] = BudgetOpt,
           seed: Optional[int] = SeedOpt, runner: Optional[str] = RunnerOpt,
           ray_address: Optional[str] = RayAddressOpt, filters: Optional[list[str]] = FilterOpt,
           metric_options: Optional[list[str]] = MetricOptionOpt, quiet: bool = QuietOpt,
           verbose: bool = VerboseOpt, as_json: bool = JsonOpt):
    """Re-select from RUN's scores (seconds): a new keep fraction or policy, no re-embedding."""
    from datapruner import api

    cfg = _config(config, run, keep=keep, metric=metric, order=order, budget=budget, seed=seed, runner=runner,
                  ray_address=ray_address, filters=_filters(filters))
    cfg = _with_metric_options(cfg, metric_options)
    _finish("select", api.select(run, cfg.keep, cfg, progress=not quiet), run, as_json)


@app.command()
@_one_line_errors
def write(run: Path, config: Optional[list[Path]] = ConfigOpt, shard_size: Optional[int] = ShardSizeOpt,
          runner: Optional[str] = RunnerOpt, ray_address: Optional[str] = RayAddressOpt,
          allow_pipe: Optional[bool] = PipeOpt, with_embeddings: Optional[bool] = WithEmbeddingsOpt,
          quiet: bool = QuietOpt, verbose: bool = VerboseOpt, as_json: bool = JsonOpt):
    """Copy RUN's kept samples byte for byte into RUN/shards."""
    from datapruner import api

    cfg = _config(config, run, shard_size=shard_size, runner=runner, ray_address=ray_address, allow_pipe=allow_pipe,
                  with_embeddings=with_embeddings)
    _finish("write", api.write(run, cfg, progress=not quiet), run, as_json)


@app.command()
@_one_line_errors
def report(run: Path, config: Optional[list[Path]] = ConfigOpt, quiet: bool = QuietOpt,
           verbose: bool = VerboseOpt, as_json: bool = JsonOpt):
    """Write RUN/report/index.html: plots and galleries of kept vs. dropped samples."""
    from datapruner import api

    path = api.report(run, _config(config, run))
    _finish("report", {"report": path}, run, as_json)


@app.command()
@_one_line_errors
def verify(run: Path, config: Optional[list[Path]] = ConfigOpt,
           task: str = typer.Option("classification", help="classification, or clip (CLIPs trained on kept pairs)."),
           methods: Optional[str] = typer.Option(None, help="Comma list of pruning methods (default: the task's)."),
           clip_model: str = typer.Option("datapruner-tiny", "--clip-model", help="clip: the open_clip config trained."),
           fractions: str = typer.Option("0.1,0.2,0.3,0.5,0.7,1.0", help="Comma list of keep fractions."),
           seeds: str = typer.Option("0,1,2,3,4", help="Comma list of seeds (students and scoring; >= 5 for verdicts)."),
           kd_alphas: str = typer.Option("0,0.5,0.9", "--kd-alphas", help="KD weights: floats in [0, 1] and/or 'auto' "
                                         "(grows as the fraction shrinks). 0 = plain cross-entropy; with weights > 0 "
                                         "the validation split also picks one ('val' rows)."),
           budget_modes: str = typer.Option("convergence,fixed_steps", "--budget-modes",
                                            help="convergence (early stopping on a validation split), fixed_steps "
                                                 "(compute-matched) and/or fixed_epochs."),
           pools: str = typer.Option("1.0", help="Comma list of pool shares of the training data (the abundance axis)."),
           student: str = typer.Option("mlp", help="linear | mlp (on embeddings) | cnn (on images from the shards)."),
           balance: str = typer.Option("none", help="none | class (the method applied inside each class)."),
           resample: str = typer.Option("", help="What each seed draws afresh (comma list): teacher."),
           test_src: Optional[str] = typer.Option(None, "--test-src", help="Held-out data: shards, a run dir or an embeddings dir."),
           test_fraction: float = typer.Option(0.2, "--test-fraction", help="Stratified hold-out when --test-src is not given."),
           val_fraction: float = typer.Option(0.1, "--val-fraction", help="Validation split carved from the training data."),
           holdout_group: Optional[str] = typer.Option(None, "--holdout-group",
                                                       help="Metadata column (a json field) whose rows stay on one side of every split."),
           src: Optional[str] = typer.Option(None, "--src", help="Embed these shards into RUN first."),
           epochs: int = typer.Option(20, help="fixed_epochs: passes over each subset; fixed_steps default: passes over the pool."),
           steps: Optional[int] = typer.Option(None, help="fixed_steps budget (default: EPOCHS passes over the pool)."),
           max_epochs: int = typer.Option(100, "--max-epochs", help="convergence: the cap, in passes over the subset."),
           patience: int = typer.Option(4, help="convergence: evaluations without improvement before a drop / the stop."),
           el2n_epoch: int = typer.Option(2, "--el2n-epoch", help="el2n: passes over the pool before scoring."),
           el2n_inits: int = typer.Option(5, "--el2n-inits", help="el2n: initialisations averaged."),
           train_batch_size: int = typer.Option(256, "--train-batch-size", help="Student batch size."),
           lr: float = typer.Option(2e-3, help="Peak AdamW learning rate (after warm-up)."),
           width: int = typer.Option(256, help="Student width (teacher: 2x)."),
           temperature: float = typer.Option(4.0, help="KD temperature T."),
           image_size: int = typer.Option(32, "--image-size", help="cnn: image side."),
           channels: int = typer.Option(3, help="cnn: 1 (grayscale) or 3 (RGB)."),
           threads: Optional[int] = typer.Option(None, help="torch CPU threads of scoring and teachers."),
           workers: Optional[int] = typer.Option(None, help="Student processes (default: the usable cores)."),
           results_dir: Optional[Path] = typer.Option(None, "--results-dir", help="Where results go (default RUN/verify)."),
           embeddings: Optional[str] = EmbeddingsOpt, model: Optional[str] = ModelOpt,
           pretrained: Optional[str] = PretrainedOpt, clusters: Optional[int] = ClustersOpt, allow_pipe: Optional[bool] = PipeOpt,
           seed: Optional[int] = SeedOpt, device: Optional[str] = DeviceOpt, quiet: bool = QuietOpt, verbose: bool = VerboseOpt, as_json: bool = JsonOpt):
    """Train a teacher on all of RUN's data and students on each method's subsets (with/without KD); RUN/verify."""
    from datapruner import api
    from datapruner.verify.pipeline import VerifySpec, default_methods

    cfg = _config(config, run, True, embeddings=embeddings, model=model, pretrained=pretrained, clusters=clusters,
                  seed=seed, device=device, allow_pipe=allow_pipe)
    spec = VerifySpec(methods=_csv(methods or default_methods(task)), task=task, clip_model=clip_model,
                      fractions=_csv(fractions, float, "--fractions"), seeds=_csv(seeds, int, "--seeds"),
                      kd_alphas=_csv(kd_alphas, _alpha, "--kd-alphas"), budget_modes=_csv(budget_modes),
                      pools=_csv(pools, float, "--pools"), student=student, balance=balance, test_src=test_src,
                      test_fraction=test_fraction, val_fraction=val_fraction, holdout_group=holdout_group, src=src,
                      epochs=epochs, steps=steps, max_epochs=max_epochs, patience=patience, el2n_epoch=el2n_epoch,
                      el2n_inits=el2n_inits, batch_size=train_batch_size, lr=lr, width=width, temperature=temperature,
                      image_size=image_size, channels=channels, threads=threads, workers=workers,
                      resample=_csv(resample), out=results_dir)
    summary = api.verify(run, spec, cfg, progress=not quiet)
    short = {k: summary.get(k) for k in ("task", "teachers", "n_train", "n_val", "n_test", "rows", "claims", "seconds",
                                         "unseen_test_labels", "students_not_converged", "skipped_methods")}
    typer.echo(json.dumps({**short, "files": summary["files"]}, indent=2, default=str) if as_json
               else "\n".join(verify_lines(summary)))


app.command("index")(_one_line_errors(_index))


# the summary at the end of a command -----------------------------------------------------------------

def _finish(title: str, summary: dict, run: Path, as_json: bool) -> None:
    """The one-screen summary for people on stdout, or (--json) the summary dict for machines."""
    if as_json:
        typer.echo(json.dumps(one_screen(summary), indent=2, default=str))
        return
    typer.echo("\n".join(summary_lines(title, summary, run, time.perf_counter() - _state["started"])))


# click's exceptions as typer raises them: click.exceptions, or typer._click.exceptions (typer >= 0.29 vendors click)
_clickx = sys.modules[typer.BadParameter.__module__]


def main(args: list[str] | None = None) -> None:
    """The `datapruner` console script: typer's app, with every usage error (a bad int, a missing option)
    as one line `error: …` on stderr and exit 2 instead of a usage box."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="datapruner", standalone_mode=False)
    except getattr(_clickx, "NoArgsIsHelpError", ()) as exc:
        exc.show()  # `datapruner` alone: the help, as typer shows it
        code = exc.exit_code
    except _clickx.UsageError as exc:
        path = exc.ctx.command_path if exc.ctx is not None else "datapruner"
        print_error(f"{exc.format_message()} (see: {path} --help)")
        code = exc.exit_code
    except _clickx.ClickException as exc:
        print_error(exc.format_message())
        code = exc.exit_code
    except typer.Abort:
        print_error("aborted")
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
