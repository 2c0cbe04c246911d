"""Issue #13: every option is checked when a command starts, before anything is read or written.

A bad option is one line `error: …` on stderr, exit 2, before torch or open_clip is imported, and no run
directory is left behind. The CLI runs as a real subprocess (`python -m datapruner.cli`, tests/cli_run.py).
"""

from __future__ import annotations

import errno
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer
from cli_run import run_cli
from conftest import TINY
from shardmaker import write_shards

from datapruner import api
from datapruner.cli_errors import user_errors
from datapruner.config import Config
from datapruner.errors import DataprunerError
from datapruner.embed.catalog import parse_pretrained_tags, pretrained_tags
from datapruner.validate import check_config

GOOD = ["--model", "datapruner-tiny", "--pretrained", "none", "--num-workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src8")
    write_shards(root, n_shards=8, per_shard=4)
    return root


# (name, flags after `score SRC -o OUT` + GOOD; later flags win, so each overrides GOOD's value, what stderr names)
SCORE_CASES = [
    ("keep>1", ["--keep", "1.5"], "--keep 1.5"),
    ("keep<0", ["--keep", "-0.1"], "--keep -0.1"),
    ("keep-not-a-number", ["--keep", "abc"], "--keep"),
    ("metric", ["--metric", "bogus"], "--metric bogus"),
    ("order", ["--order", "x"], "--order x"),
    ("budget", ["--budget", "x"], "--budget x"),
    ("filter-name", ["--filter", "bogus:eps=0.1"], "--filter bogus"),
    ("filter-not-a-number", ["--filter", "semdedup:eps=abc"], "eps must be a number in [0, 1]"),
    ("filter-range", ["--filter", "semdedup:eps=2"], "eps must be a number in [0, 1]"),
    ("filter-two-modes", ["--filter", "semdedup:eps=0.1,fraction=0.2"], "exactly one of eps, fraction"),
    ("filter-no-mode", ["--filter", "semdedup"], "exactly one of eps, fraction"),
    ("filter-syntax", ["--filter", "semdedup:eps"], "--filter"),
    ("filter-fraction", ["--filter", "clip_score:fraction=1.5"], "fraction must be"),
    ("metric-option-name", ["--metric-option", "bogus:x=1"], "--metric-option"),
    ("metric-option-key", ["--metric-option", "dbp:foo=1"], "foo"),
    ("metric-option-value", ["--metric-option", "dbp:tau=0"], "tau must be a number > 0"),
    ("metric-option-choice", ["--metric-option", "el2n_probe:labels=x"], "labels must be one of auto, data, cluster"),
    ("clusters<0", ["--clusters", "-3"], "--clusters -3"),
    ("clusters=0", ["--clusters", "0"], "--clusters 0"),
    ("shard-size", ["--shard-size", "0"], "--shard-size 0"),
    ("batch-size", ["--batch-size", "0"], "--batch-size 0"),
    ("batch-size-not-an-int", ["--batch-size", "abc"], "--batch-size"),
    ("num-workers", ["--num-workers", "-1"], "--num-workers -1"),
    ("seed", ["--seed", "-1"], "--seed -1"),
    ("device", ["--device", "tpu"], "--device tpu"),
    ("device-index", ["--device", "cuda:x"], "--device cuda:x"),
    ("model", ["--model", "bogus"], "--model bogus"),
    ("pretrained-file", ["--pretrained", "{tmp}/missing.pt"], "--pretrained {tmp}/missing.pt: no such checkpoint file"),
    ("pretrained-tag", ["--pretrained", "laion2b_s34b_b79k"], "--pretrained laion2b_s34b_b79k"),
    ("runner", ["--runner", "x"], "--runner x"),
    ("embeddings", ["--embeddings", "{tmp}/no-such-dir"], "--embeddings"),
    ("config-file", ["--config", "{tmp}/missing.yaml"], "missing.yaml"),
    ("unknown-flag", ["--bogus", "1"], "--bogus"),
]


@pytest.mark.parametrize("flags,names", [c[1:] for c in SCORE_CASES], ids=[c[0] for c in SCORE_CASES])
def test_a_bad_option_is_one_line_exit_2_before_any_work_and_writes_nothing(src, tmp_path, flags, names):
    out = tmp_path / "out"
    flags = [f.format(tmp=tmp_path) for f in flags]
    result, imported = run_cli(["score", str(src), "-o", str(out), *GOOD, *flags])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert names.format(tmp=tmp_path) in lines[0]
    assert not imported, f"refused only after importing {imported}"
    assert not out.exists()


OTHER_CASES = [
    ("missing-out", ["score", "{src}", "--keep", "0.5"], "--out"),
    ("missing-src", ["score"], "src"),
    ("embed-device", ["embed", "{src}", "-o", "{out}", "--device", "tpu"], "--device tpu"),
    ("embed-pretrained", ["embed", "{src}", "-o", "{out}", "--model", "datapruner-tiny", "--pretrained", "x.pt"],
     "--pretrained x.pt"),
    ("cluster-no-run", ["cluster", "{out}"], "{out}"),
]


@pytest.mark.parametrize("args,names", [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES])
def test_other_commands_and_usage_errors_are_one_line(src, tmp_path, args, names):
    out = tmp_path / "out"
    result, imported = run_cli([a.format(src=src, out=out) for a in args])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert names.format(out=out) in lines[0]
    assert not imported, f"refused only after importing {imported}"
    assert not out.exists()


def test_a_valid_command_is_not_refused(src, tmp_path):
    out = tmp_path / "out"
    result, imported = run_cli(["score", str(src), "--keep", "0.5", "--model", "datapruner-tiny", "--pretrained",
                                "none", "--num-workers", "0", "-o", str(out), "--quiet"], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "manifest/keep.parquet").is_file()
    assert imported == {"torch", "open_clip"}  # what the refusals above are seen not to import


def test_help_exits_0_without_importing_torch_or_open_clip():
    result, imported = run_cli(["score", "--help"])
    assert result.returncode == 0 and "--keep" in result.stdout and not imported


def test_checking_imports_neither_torch_nor_open_clip(tmp_path):
    code = ("import sys; from datapruner.config import Config; from datapruner.validate import check_config; "
            "check_config(Config(), 'score', 'src'); check_config(Config(model='datapruner-tiny', pretrained='none'), "
            "'score', 'src'); bad = [m for m in ('torch', 'open_clip') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# the API checks too (Airflow and Ray call it), before the run directory exists ---------------------------

@pytest.mark.parametrize("override", [dict(keep=1.5), dict(metric="bogus"), dict(device="tpu"), dict(clusters=0),
                                      dict(filters=[{"name": "semdedup", "eps": 2}]), dict(kmeans_iters=0),
                                      dict(workers=0), dict(max_image_pixels=0), dict(kmeans_sample=0),
                                      dict(precision="fp8"), dict(seed=1.5), dict(metrics=("bogus",))])
def test_the_api_refuses_before_creating_the_run(src, tmp_path, override):
    out = tmp_path / "out"
    cfg = Config(**TINY).replace(**override)
    with pytest.raises(DataprunerError) as exc:
        api.score(str(src), out, cfg.keep, cfg, progress=False)
    assert "\n" not in str(exc.value)
    assert not out.exists()


def test_a_run_only_command_checks_only_what_its_steps_use():
    recorded = Config(model="bogus", pretrained="/gone/model.pt", batch_size=0)  # embed inputs: not loaded again
    for command in ("cluster", "measure", "select", "write", "report"):
        check_config(recorded, command)
    with pytest.raises(DataprunerError, match="--batch-size 0|--model bogus"):
        check_config(recorded, "score", "src")
    check_config(Config(metric="bogus", keep=7), "write")  # write reads neither the policy nor keep
    with pytest.raises(DataprunerError, match="--metric bogus"):
        check_config(Config(metric="bogus"), "select")
    with pytest.raises(DataprunerError, match="--shard-size 0"):
        check_config(Config(shard_size=0), "write")
    with pytest.raises(DataprunerError, match="--clusters 0"):
        check_config(Config(clusters=0), "cluster")
    check_config(Config(clusters=None, kmeans_sample=None), "cluster")


def test_precomputed_embeddings_need_no_model(tmp_path):
    check_config(Config(embeddings=str(tmp_path), model="bogus", pretrained="missing.pt"), "score", "src")


def test_pretrained_values():
    check_config(Config(model="ViT-B-32", pretrained="laion2b_s34b_b79k"), "embed", "src")
    check_config(Config(model="ViT-B-32", pretrained="LAION2B-S34B-B79K"), "embed", "src")  # open_clip cleans tags
    check_config(Config(model="ViT-B-32-quickgelu", pretrained="openai"), "embed", "src")
    check_config(Config(model="datapruner-tiny", pretrained="hf-hub:org/repo"), "embed", "src")
    for none in ("none", "", None):
        check_config(Config(model="datapruner-tiny", pretrained=none), "embed", "src")
    with pytest.raises(DataprunerError, match="choose one of .*laion2b_s34b_b79k"):
        check_config(Config(model="ViT-B-32", pretrained="laion2b"), "embed", "src")


def test_an_existing_checkpoint_file_is_accepted(tmp_path):
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"\0")
    check_config(Config(model="datapruner-tiny", pretrained=str(ckpt)), "embed", "src")


def test_the_pretrained_tags_are_open_clips():
    import open_clip

    expected: dict[str, set[str]] = {}
    for model, tag in open_clip.list_pretrained():
        expected.setdefault(model, set()).add(tag)
    assert pretrained_tags() == expected
    assert parse_pretrained_tags("x = 1") is None  # an unreadable table: tags are left to open_clip


def test_devices():
    from datapruner.embed.model import pick_device

    for good in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        check_config(Config(device=good), "cluster")
    for bad in ("tpu", "gpu", "cuda:", "cuda:-1", "CPU", "", "mps"):
        with pytest.raises(DataprunerError, match="choose one of auto, cpu, cuda, cuda:N"):
            check_config(Config(device=bad), "cluster")
        with pytest.raises(DataprunerError):
            pick_device(bad)


def test_cuda_n_names_a_gpu_that_must_be_there():
    import torch

    from datapruner.embed.model import pick_device

    if torch.cuda.is_available():
        assert pick_device("cuda:0") == "cuda:0"
        with pytest.raises(DataprunerError, match="cuda:999"):
            pick_device("cuda:999")
        return
    with pytest.raises(DataprunerError, match="--device cuda:1: torch finds no CUDA GPU"):
        pick_device("cuda:1")


@pytest.mark.parametrize("code,hint", [(errno.ENOSPC, "free space"), (errno.EDQUOT, "free space"),
                                       (errno.EFBIG, "free space"), (errno.EACCES, "fix permissions"),
                                       (errno.EROFS, "fix permissions")])
def test_a_full_disk_or_a_refused_write_is_one_line_exit_1(capsys, code, hint):
    def fails():
        raise OSError(code, __import__("os").strerror(code), "/runs/r/embeddings/img_emb/.img_emb_3.npy.tmp")

    with pytest.raises(typer.Exit) as exc, user_errors():
        fails()
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.exit_code == 1 and len(err) == 1
    assert err[0].startswith("error: /runs/r/embeddings/img_emb/.img_emb_3.npy.tmp: ")
    assert f"({hint} and rerun: finished parts are kept)" in err[0]


def test_other_os_errors_keep_their_traceback():
    with pytest.raises(FileNotFoundError), user_errors():
        open("/no/such/file")


def test_the_console_script_is_the_one_line_wrapper():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["datapruner"] == "datapruner.cli:main"


def test_a_named_gpu_is_refused_on_ray_where_each_actor_sees_only_its_own():
    with pytest.raises(DataprunerError, match="--device cuda:1: names one GPU, but on Ray each actor sees only"):
        check_config(Config(runner="ray", device="cuda:1"), "embed", "src")
    check_config(Config(runner="ray", device="cuda"), "cluster")  # a barrier alone: the driver's device
