"""Issue #15 (CLI): what a person at a terminal, or reading a CI / Airflow log, sees of a run.

INFO lines by default (-q: warnings only), --version, layered --config, a one-screen summary (--json for
machines), progress as log lines when stderr is not a TTY, and an unreachable model hub failing at its
probe, before open_clip starts a download, with one line saying how to run offline. The CLI runs as a real
subprocess on real shards (tests/cli_run.py, which also reports whether torch and open_clip were imported).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_run import run_cli
from shardmaker import sample_members, write_shards, write_tar
from typer.testing import CliRunner

import datapruner
from datapruner.cli import app

ROOT = Path(__file__).resolve().parents[1]
from datapruner.config import load_config

TINY_FLAGS = ["--model", "datapruner-tiny", "--pretrained", "none", "--num-workers", "0", "--batch-size", "8",
              "--clusters", "4", "--shard-size", "16"]
INFO = re.compile(r"^\d\d:\d\d:\d\d INFO (\S+): ", re.M)
PROGRESS = re.compile(r"^\d\d:\d\d:\d\d INFO datapruner\.progress: embed: (\d+)(/\d+)? (samples|parts)\b.*elapsed "
                      r"\d+:\d\d:\d\d", re.M)


def cli(args: list[str], timeout: float = 300, **env: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """(the finished process, which of torch and open_clip it imported)."""
    return run_cli(args, timeout, env)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """3 shards × 20 good samples, and a fourth shard with 3 good samples and one undecodable image."""
    root = tmp_path_factory.mktemp("ux-src")
    write_shards(root, n_shards=3, per_shard=20)
    good = [(f"9{i:05d}", sample_members(900 + i, i % 4)) for i in range(3)]
    write_tar(root / "shard-00003.tar", [*good, ("900099", {"jpg": b"not a jpeg at all", "txt": b"broken"})])
    return root


@pytest.fixture(scope="module")
def scored(src, tmp_path_factory):
    """One `datapruner score` run, stderr a pipe (not a TTY), progress logged every 0.2 s."""
    out = tmp_path_factory.mktemp("ux-run") / "run"
    result, _ = cli(["score", str(src), "--keep", "0.3", "-o", str(out), *TINY_FLAGS],
                    DATAPRUNER_PROGRESS_INTERVAL="0.2")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def copy_of(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_info_lines_reach_stderr_by_default(scored):
    _, result = scored
    loggers = INFO.findall(result.stderr)
    assert "datapruner.embed.model" in loggers, result.stderr[-3000:]  # "loading open_clip datapruner-tiny …"
    assert "loading open_clip datapruner-tiny (pretrained=random init)" in result.stderr
    assert len([name for name in loggers if name.startswith("datapruner.") and name != "datapruner.progress"]) >= 3
    noisy = {name for name in loggers if not name.startswith("datapruner")}
    assert not noisy, f"third-party INFO lines: {noisy}"
    assert "Traceback" not in result.stderr


def test_progress_is_logged_at_an_interval_when_stderr_is_not_a_tty(scored):
    _, result = scored
    lines = PROGRESS.findall(result.stderr)
    assert lines, result.stderr[-3000:]
    assert "\r" not in result.stderr  # no tqdm bar redrawn into a log
    samples = [m for m in PROGRESS.finditer(result.stderr) if m.group(3) == "samples"]
    assert any(m.group(2) for m in samples), "once a batch is read, the samples line has a total"
    assert re.search(r"embed: \d+/\d+ samples \(\d+%\), [\d.]+ samples/s, elapsed \S+, ETA \d+:\d\d:\d\d",
                     result.stderr)
    assert re.search(r"INFO datapruner\.progress: embed: done, 63 samples in \d+:\d\d:\d\d", result.stderr)


def test_the_summary_says_what_was_read_kept_removed_and_invalid(scored):
    out, result = scored
    text = result.stdout
    assert "Traceback" not in text and not text.lstrip().startswith("{")
    assert re.search(r"^read +4 shard\(s\), 64 sample\(s\)", text, re.M), text
    assert re.search(r"^valid +63; invalid 1 .*1 invalid at decode: undecodable image", text, re.M), text
    assert re.search(r"^kept +19 of 63 valid \(30\.2%\)", text, re.M), text
    assert re.search(r"^removed +44 below the global budget", text, re.M), text
    assert str(out / "shards") in text and str(out / "manifest/keep.parquet") in text
    assert str(out / "report/index.html") in text
    steps = re.search(r"^steps +(.*(\n {10}.*)*)", text, re.M)
    assert steps and all(re.search(rf"\b{s} \d+\.\ds", steps.group(1)) for s in ("embed", "cluster", "select", "write"))
    assert len(text.splitlines()) <= 20  # one screen


def test_quiet_hides_info_and_json_parses(scored, tmp_path):
    run = copy_of(scored[0], tmp_path)
    result, _ = cli(["select", str(run), "--keep", "0.5", "-q", "--json"])
    assert result.returncode == 0, result.stderr
    assert not INFO.findall(result.stderr), result.stderr
    summary = json.loads(result.stdout)
    assert summary["select"]["counts"] == {"samples": 64, "valid": 63, "invalid": 1, "kept": 32}
    assert summary["select"]["reasons"]["invalid at decode: undecodable image"] == 1
    assert isinstance(summary["select"]["seconds"], float)
    # the driver's share: select is a barrier, so its CPU time is the driver's; its peak RSS is the process's
    assert 0 < summary["select"]["driver_cpu_seconds"] and summary["select"]["driver_peak_rss_mib"] > 50
    recorded = json.loads((run / "run.json").read_text())["driver"]["select"]
    assert recorded == {k: summary["select"][k] for k in ("driver_cpu_seconds", "driver_peak_rss_mib")}
    before, _ = cli(["-q", "select", str(run), "--keep", "0.4"])  # -q before the command name works too
    assert before.returncode == 0 and not INFO.findall(before.stderr), before.stderr
    assert re.search(r"^kept +25 of 63 valid", before.stdout, re.M), before.stdout


def test_verbose_shows_debug_and_a_traceback_for_a_users_error(tmp_path):
    result, _ = cli(["cluster", str(tmp_path / "no-run"), "-v"])
    assert result.returncode == 2
    assert "Traceback" in result.stderr and result.stderr.strip().splitlines()[-1].startswith("error: ")
    plain, _ = cli(["cluster", str(tmp_path / "no-run")])
    assert plain.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1


def test_version():
    result, imported = cli(["--version"], timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"datapruner {datapruner.__version__}"
    assert not imported


def test_shell_completion_is_offered_and_completes():
    result, _ = cli(["--help"], timeout=60)
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout
    words, _ = cli([], timeout=60, COMP_WORDS="datapruner score --ke", COMP_CWORD="2",
                   _DATAPRUNER_COMPLETE="complete_bash")
    assert words.stdout.split() == ["--keep"], words.stdout + words.stderr


def test_layered_configs_later_files_and_then_flags_win(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(yaml.safe_dump({"keep": 0.2, "metric": "random", "order": "hard", "clusters": 7,
                                     "metric_options": {"dbp": {"tau": 0.05, "beta": 0.5}}}))
    second.write_text(yaml.safe_dump({"keep": 0.3, "order": "easy", "metric_options": {"dbp": {"beta": 0}}}))
    cfg = load_config([first, second], keep=0.4)
    assert (cfg.keep, cfg.metric, cfg.order, cfg.clusters) == (0.4, "random", "easy", 7)
    assert cfg.metric_options == {"dbp": {"tau": 0.05, "beta": 0}}
    assert load_config(first).keep == 0.2 and load_config(str(second)).order == "easy"  # one path still works
    assert load_config([second, first]).order == "hard"


def test_layered_configs_on_the_command_line(scored, tmp_path):
    run = copy_of(scored[0], tmp_path)
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("keep: 0.2\nmetric: random\n")
    second.write_text("keep: 0.25\norder: easy\n")
    result = CliRunner().invoke(app, ["select", str(run), "-c", str(first), "--config", str(second), "-q", "--json"])
    assert result.exit_code == 0, result.output
    select = json.loads(result.stdout)["select"]
    assert select["keep_fraction"] == 0.25 and select["policy"]["metric"] == "random"
    flagged = CliRunner().invoke(app, ["select", str(run), "-c", str(first), "-c", str(second), "--keep", "0.5",
                                       "-q", "--json"])
    assert json.loads(flagged.stdout)["select"]["keep_fraction"] == 0.5
    bad = tmp_path / "bad.yaml"
    bad.write_text("keep: [0.3\n")
    broken = CliRunner().invoke(app, ["select", str(run), "-c", str(first), "-c", str(bad)])
    assert broken.exit_code == 2 and "bad.yaml: not valid YAML" in broken.output


def _hub_endpoint_env() -> dict:
    """This machine's real hub when it cannot be reached (no internet); elsewhere a local port that refuses
    connections, so the test never downloads."""
    from datapruner.embed.model import reachable

    return {} if not reachable("https://huggingface.co") else {"HF_ENDPOINT": "http://127.0.0.1:9"}


def test_an_unreachable_hub_fails_at_its_probe_with_one_line_saying_how_to_run_offline(src, tmp_path):
    """The probe (one HEAD request, embed/model.py reachable) refuses the run: open_clip, whose download
    retries for a minute, is never imported, and no embedding is written."""
    env = {**_hub_endpoint_env(), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    result, imported = cli(["score", str(src), "--keep", "0.3", "-o", str(tmp_path / "out"), "--num-workers", "0"],
                           timeout=60, **env)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "open_clip" not in imported and not (tmp_path / "out/embeddings").exists()
    assert len(errors) == 1 and "Traceback" not in result.stderr and "Retrying" not in result.stderr, result.stderr
    for hint in ("--pretrained FILE", "--pretrained none", "configs/offline-demo.yaml", "HF_HUB_OFFLINE=1"):
        assert hint in errors[0]
    offline, imported = cli(["score", str(src), "--keep", "0.3", "-o", str(tmp_path / "out2"), "--num-workers", "0"],
                            timeout=60, **{**env, "HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2 and "not in the Hugging Face cache" in offline.stderr
    assert "open_clip" not in imported and not (tmp_path / "out2/embeddings").exists()
    # following the hint on the same --out: the failed run embedded nothing, so it pinned no model
    hinted, _ = cli(["score", str(src), "--keep", "0.3", "-o", str(tmp_path / "out"), "--num-workers", "0",
                     "--config", str(ROOT / "configs/offline-demo.yaml"), "-q"], **env)
    assert hinted.returncode == 0, hinted.stderr[-3000:]
    recorded = json.loads((tmp_path / "out/run.json").read_text())["embed"]["inputs"]
    assert (recorded["model"], recorded["pretrained"]) == ("datapruner-tiny", "none")


LOAD_CACHED = """
import logging, sys, time
logging.basicConfig(level=logging.INFO)
from datapruner.embed.model import load_clip
start = time.perf_counter()
clip = load_clip("ViT-B-32", "laion2b_s34b_b79k", "cpu")
print("loaded", clip.dim, round(time.perf_counter() - start, 1))
"""

MAKE_CACHE = """
import sys, open_clip, torch
from safetensors.torch import save_file
model = open_clip.create_model("ViT-B-32", pretrained=None)
save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, sys.argv[1])
"""


@pytest.mark.slow
def test_weights_in_the_cache_load_without_the_hub(tmp_path):
    """A filled Hugging Face cache (here: a random ViT-B-32 saved where the laion2b tag's file goes) loads
    with the hub unreachable, without retries, whether or not HF_HUB_OFFLINE is set."""
    snapshot = tmp_path / "hub/models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K/snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (tmp_path / "hub/models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K/refs").mkdir()
    (tmp_path / "hub/models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K/refs/main").write_text("0" * 40)
    subprocess.run([sys.executable, "-c", MAKE_CACHE, str(snapshot / "open_clip_model.safetensors")], check=True,
                   timeout=300)
    for offline in ("0", "1"):
        env = {**os.environ, **_hub_endpoint_env(), "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": offline}
        result = subprocess.run([sys.executable, "-c", LOAD_CACHED], capture_output=True, text=True, timeout=300,
                                env=env)
        assert result.returncode == 0 and "loaded 512" in result.stdout, result.stderr[-3000:]
        assert "Retrying" not in result.stderr


# -q: datapruner's own warnings and errors only --------------------------------------------------------------

OURS = re.compile(r"^\d\d:\d\d:\d\d (WARNING|ERROR|CRITICAL) datapruner[.:]")


def _palette_png() -> bytes:
    """A palette PNG whose transparency is bytes: PIL warns, once per image, when it becomes RGB."""
    import io

    from PIL import Image

    img = Image.new("P", (24, 24))
    img.putpalette([200, 30, 30, 30, 200, 30] + [0] * 762)
    img.frombytes(bytes((i // 24 + i) % 2 for i in range(576)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=bytes([0, 255]))
    return buf.getvalue()


@pytest.fixture(scope="module")
def noisy_src(tmp_path_factory) -> Path:
    """20 samples, 5 of them palette PNGs with byte transparency."""
    root = tmp_path_factory.mktemp("noisy-src")
    samples = [(f"{i:06d}", sample_members(i, i % 4, "png" if i % 4 == 0 else "jpg")) for i in range(20)]
    for _, members in samples[::4]:
        members["png"] = _palette_png()
    write_tar(root / "shard-00000.tar", samples)
    return root


def test_quiet_shows_only_datapruners_own_warnings_and_errors(noisy_src, tmp_path):
    quiet, _ = cli(["score", str(noisy_src), "--keep", "0.5", "-o", str(tmp_path / "q"), *TINY_FLAGS, "-q"])
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    foreign = [line for line in quiet.stderr.splitlines() if line.strip() and not OURS.match(line)]
    assert not foreign, quiet.stderr[-3000:]
    loud, _ = cli(["score", str(noisy_src), "--keep", "0.5", "-o", str(tmp_path / "loud"), *TINY_FLAGS])
    assert loud.returncode == 0 and "pretrained=random init" in loud.stderr  # datapruner's own line says it
    for noise in ("initialized randomly", "Palette images with Transparency"):
        assert noise not in quiet.stderr and noise not in loud.stderr


FOLLOW_DRIVER = """
import logging, warnings
from datapruner.logs import follow_driver
follow_driver(int(__import__("sys").argv[1]))
logging.warning("root warning from a library")
logging.getLogger("somelib").warning("somelib warning")
logging.getLogger("somelib").error("somelib error")
logging.getLogger("datapruner.x").warning("our warning")
logging.getLogger("datapruner.x").info("our info")
warnings.warn("a library's python warning")
"""


def test_a_ray_actor_of_a_quiet_driver_drops_other_libraries_warnings():
    """What runners/ray.py's Worker runs first (follow_driver), in a fresh process as an actor is."""
    def run(level: int) -> str:
        done = subprocess.run([sys.executable, "-c", FOLLOW_DRIVER, str(level)], capture_output=True, text=True,
                              timeout=60, check=True)
        return done.stderr

    quiet = run(30)
    assert "our warning" in quiet and "somelib error" in quiet
    for gone in ("root warning", "somelib warning", "our info", "python warning"):
        assert gone not in quiet, quiet
    untouched = run(0)  # NOTSET: a library call, no CLI level to follow
    assert "root warning" in untouched and "python warning" in untouched


# --help -----------------------------------------------------------------------------------------------------

def test_help_at_80_columns_shows_full_option_names_and_defaults():
    result, imported = cli(["score", "--help"], COLUMNS="80")
    assert result.returncode == 0 and not imported, result.stderr
    text = result.stdout
    assert all(len(line) <= 80 for line in text.splitlines()), max(text.splitlines(), key=len)
    assert "…" not in text
    for name in ("--embeddings-layout", "--embeddings-column", "--metric-option", "--precision", "--shard-size",
                 "--num-workers", "--batch-size", "--ray-address"):
        assert re.search(rf"(^|[ ,]){re.escape(name)}\b", text, re.M), name
    flat = " ".join(text.split())
    for default in ("[default: (ViT-B-32)]", "[default: (0.3)]", "[default: (prototypicality)]",
                    "[default: (sqrt(N))]", "[default: (auto)]"):
        assert default in flat, default
