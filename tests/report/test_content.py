"""What the report shows of a semdedup + dbp run with copies and bad samples, and how it reads embeddings."""

from __future__ import annotations

import html
import json

import numpy as np
import pyarrow.parquet as pq

from datapruner.embed.outputs import read_img_emb, unit_rows
from datapruner.io.rundir import RunDir
from datapruner.report.data import embeddings, load_manifest, seeded_sample


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


def test_embeddings_of_sampled_rows_are_the_parts_rows(demo_run):
    rd = RunDir(demo_run)
    manifest = load_manifest(rd)
    every = unit_rows(np.concatenate([read_img_emb(rd, p) for p in rd.part_ids()]))
    rows = seeded_sample(manifest.n, 17, seed=3)[::-1]
    assert len(rows) == 17
    np.testing.assert_array_equal(embeddings(rd, manifest, rows), every[rows])
    assert np.array_equal(seeded_sample(manifest.n, 17, seed=3)[::-1], rows)
