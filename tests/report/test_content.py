"""What the report shows of a semdedup + dbp run with copies and bad samples, and how it reads embeddings."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pyarrow.parquet as pq

from datapruner.embed.outputs import read_img_emb, unit_rows
from datapruner.io.rundir import RunDir
from datapruner.report.data import embeddings, load_manifest, seeded_sample
from datapruner.report.space import measure, verdict


def page_of(run) -> str:
    return RunDir(run).report_html.read_text()


def test_one_self_contained_file(demo_run):
    rd = RunDir(demo_run)
    assert sorted(p.name for p in rd.report_dir.iterdir()) == ["index.html"]
    assert json.loads(rd.marker("report", "report").read_text())["outputs"] == ["report/index.html"]
    page = page_of(demo_run)
    srcs = [s.split('"', 1)[0] for s in page.split(' src="')[1:]]
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in page and "http://" not in page and "https://" not in page


def test_policy_facts_and_counts_in_words(demo_run):
    page = page_of(demo_run)
    assert "SemDeDup removing the most duplicated 20 %, then DBP budget" in page
    assert "keep the hardest 40 % by DBP" in page
    for fact in ("source", "input shards", "model", "datapruner-tiny", "pretrained", "pruned shards", "written"):
        assert fact in page
    summary = json.loads(RunDir(demo_run).summary_json.read_text())
    for reason, count in summary["reasons"].items():
        assert f"<td>{html.escape(reason).replace('&#x27;', '&#39;')}</td><td class=\"n\">{count:,}</td>" in page or reason == "kept"
    assert "invalid at decode: undecodable image" in page and "invalid at decode: bad label" in page


def test_clusters_by_id_with_the_dbp_table(demo_run):
    page = page_of(demo_run)
    rd = RunDir(demo_run)
    dbp = pq.read_table(rd.budget_clusters("dbp")).to_pylist()
    for label in ("d_intra", "d_inter", "C = d_intra·d_inter", "P = softmax(C/τ)", "quota"):
        assert label in page
    for row in dbp:
        assert f'<tr id="cluster-{row["cluster"]}">' in page
    sizes = json.loads(rd.summary_json.read_text())["clusters"]["size"]
    largest = int(np.argmax(sizes))
    assert f'<a href="#cluster-{largest}">cluster {largest}</a>: {sizes[largest]} samples' in page


def test_galleries_have_captions_and_duplicates_show_copies_beside_the_kept(demo_run):
    page = page_of(demo_run)
    assert '<span class="cap">a ' in page  # the tests' captions: "a red disc number 7"
    groups = page.split('<div class="group">')[1:]
    assert groups, "no SemDeDup group shown"
    # the extra shard's byte-identical copies are removed beside their original (similarity 1)
    copies = [g for g in groups if "copy-of-" in g]
    assert copies and any("sim 1.0000" in g for g in copies)


def test_invalid_samples_by_reason_with_shard_and_key(demo_run):
    section = page_of(demo_run).split('id="invalid"')[1].split("</section>")[0]
    for key in ("bad-image-0", "bad-image-1", "bad-label-0"):
        assert f"<td>{key}</td>" in section
    assert "zz-extra.tar" in section and "decode: undecodable image" in section


def test_map_and_the_random_baseline(demo_run):
    page = page_of(demo_run)
    assert 'alt="2-D PCA map of the image embeddings"' in page
    section = page.split('id="random"')[1].split("</section>")[0]
    for label in ("clusters with at least one kept sample", "cluster distribution to the full one",
                  "label distribution", "mean cosine distance from a dropped sample to its nearest kept one"):
        assert label in section
    assert section.count("<tr>") >= 5


def test_the_top_says_in_words_how_the_selection_compares_with_random_and_warns_of_a_random_init(demo_run):
    page = page_of(demo_run)
    header = page.split("<header>")[1].split("</header>")[0]
    verdict = html.unescape(header.split('id="versus-verdict">')[1].split("<a ")[0])
    assert verdict.startswith("Against a random subset of the same size (")
    rows = page.split('id="versus-table"')[1].split("</table>")[0].count("<tr>") - 1
    assert re.search(rf"is (better on \d+ of {rows} measures below|worse on (every measure|\d+ of {rows} measures) "
                     rf"below|equal to it on all {rows} measures below)", verdict), verdict
    warning = html.unescape(header.split('id="random-init">')[1].split("</div>")[0])
    assert "datapruner-tiny, is a random init (pretrained: none)" in " ".join(warning.split())


def _row(name: str, selection: float, baseline: float, better: str) -> dict:
    return measure(name, name, selection, baseline, ".3f", better)


def test_the_verdict_counts_each_measure_in_its_own_direction():
    worse = [_row("cluster shares", 0.169, 0.043, "lower"), _row("clusters covered", 3, 4, "higher")]
    assert verdict(worse, 300) == ("Against a random subset of the same size (300 samples), this selection is worse "
                                   "on every measure below (cluster shares, clusters covered) and better on none: a "
                                   "random subset covers the data better. Check that this policy helps a model "
                                   "trained on it (datapruner verify) before using it.")
    assert "worse on 2 of 3 measures below" in verdict(worse + [_row("e", 1, 1, "lower")], 300)
    mixed = [_row("a", 0.1, 0.2, "lower"), _row("b", 5, 4, "higher"), _row("c", 1, 2, "higher"),
             _row("d", 0.0004, 0.0001, "lower")]  # d: equal as shown (0.000)
    assert verdict(mixed, 1000).endswith("this selection is better on 2 of 4 measures below (a, b), worse on 1 (c), "
                                         "equal on 1.")
    assert verdict([_row("a", 1, 1, "lower")], 5).endswith("is equal to it on all 1 measures below.")


def test_embeddings_of_sampled_rows_are_the_parts_rows(demo_run):
    rd = RunDir(demo_run)
    manifest = load_manifest(rd)
    every = unit_rows(np.concatenate([read_img_emb(rd, p) for p in rd.part_ids()]))
    rows = seeded_sample(manifest.n, 17, seed=3)[::-1]
    assert len(rows) == 17
    np.testing.assert_array_equal(embeddings(rd, manifest, rows), every[rows])
    assert np.array_equal(seeded_sample(manifest.n, 17, seed=3)[::-1], rows)
