"""run.json and the model manifest as typed models: written and read in one place, older files
still read (tests/data holds a run.json and a manifest written by tagger before format versions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tagger.cli import main
from tagger.errors import InputError, ModelError
from tagger.lifecycle.manifest import FORMAT_VERSION as MODEL_FORMAT
from tagger.lifecycle.manifest import from_saved
from tagger.lifecycle.segment_model import MODEL_DIR, load_model
from tagger.stages.data import LoadStats
from tagger.summary import FORMAT_VERSION, Counts, RunSummary, read_summary

DATA = Path(__file__).resolve().parent / "data"
FAST = ["--engine", "fake", "--embedder", "hash"]


def test_a_run_writes_a_typed_summary_that_reads_back_equal(run_dir):
    data = json.loads((run_dir / "run.json").read_text())
    assert data["format_version"] == FORMAT_VERSION and "stability" not in data
    summary = read_summary(run_dir)
    assert summary.counts.users == 12 and summary.embedder == "hash" and summary.stability is None
    assert RunSummary.model_validate_json(summary.to_json()) == summary
    assert json.loads(summary.to_json()) == data


def test_every_row_count_of_the_loader_has_a_field():
    assert set(LoadStats.ROW_REASONS) | set(LoadStats.TEXT_COUNTS) <= set(Counts.model_fields)


@pytest.mark.parametrize("name", ["run-json-main.json", "run-json-main-recut.json"])
def test_a_run_json_written_before_format_versions_still_reads(run_dir, name, capsys):
    """tests/data holds run.json files tagger wrote before format versions (a run with
    --stability, --time-col and a rename; a recut one): a run folder holding one still shows,
    renames and assigns."""
    shutil.copy(DATA / name, run_dir / "run.json")
    summary = read_summary(run_dir)
    assert summary.format_version == FORMAT_VERSION and summary.counts.users == 40
    assert summary.renamed is not None and summary.prompts["tag"].sha256
    if "recut" in name:
        assert summary.recut.from_run.endswith("v0full") and summary.tree.segments_asked == 3
    else:
        assert summary.stability.mean_ari == pytest.approx(0.3648) and summary.over_time.period == "month"
    assert main(["show", str(run_dir)]) == 0
    assert "segments of 40 users" in capsys.readouterr().out


def test_a_run_json_of_a_newer_format_stops_with_the_fix(run_dir, capsys):
    data = json.loads((run_dir / "run.json").read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (run_dir / "run.json").write_text(json.dumps(data))
    assert main(["show", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "format version" in err and "upgrade tagger" in err
    assert len(err.strip().splitlines()) == 1


def test_a_run_json_that_is_not_a_summary_stops_with_one_line(run_dir, capsys):
    (run_dir / "run.json").write_text(json.dumps({"format_version": 1, "config": {}, "counts": "many"}))
    with pytest.raises(InputError, match="rerun `tagger segment`"):
        read_summary(run_dir)
    assert main(["show", str(run_dir)]) == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_manifest_is_typed_and_a_format_2_manifest_still_reads(run_dir):
    manifest = json.loads((run_dir / MODEL_DIR / "manifest.json").read_text())
    assert manifest["format_version"] == MODEL_FORMAT and "embedder_fingerprint" not in manifest
    model = load_model(run_dir)
    assert model.manifest.embedder == "hash" and model.manifest.candidates.n_documents == 12
    assert len(model.embedder_fingerprint) > 0 and model.leaf_ids.tolist() == list(range(len(model.segments)))
    old = from_saved(json.loads((DATA / "manifest-v2.json").read_text()), "test")
    assert old.format_version == 2 and old.lexical.dims == 30 and old.candidates.phrases == 728


def test_a_manifest_of_another_format_stops_with_the_fix(run_dir):
    path = run_dir / MODEL_DIR / "manifest.json"
    data = json.loads(path.read_text())
    data["format_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="format version 99.*rerun `tagger segment`"):
        load_model(run_dir)
