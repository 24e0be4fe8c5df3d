"""Label roles in a study: scans of a dataset with `station_labels = false` never reach a station loss term or
a station metric, and keep their N-stage terms. Two real tiny cohorts (conftest) pooled by a study file."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cache.build_settings import build_settings_for, expected_settings
from cache.dataset import load_study, study_rows
from train.__main__ import main
from train.data import ScanBatches, open_study_part, sampler_settings, station_pairs
from train.losses import LossWeights, n_stage_loss
from train.settings import TrainSettings

from .conftest import write_tiny_cohort


def write_tiny_study(root: Path, **dx_changes) -> Path:
    """Study "pool" under `root`: the tiny cohort with station labels, and a copy "dx" without (same patient
    ids, other draws; `dx_changes`: keyword arguments of write_tiny_cohort for it); returns the study file."""
    (root / "tiny").mkdir(parents=True)
    (root / "dx").mkdir()
    labelled = write_tiny_cohort(root / "tiny")
    dx = write_tiny_cohort(root / "dx", **{"seed": 1, **dx_changes})
    shutil.move(root / "dx" / "cache" / "tiny", root / "dx" / "cache" / "dx")
    text = dx.read_text().replace('cache_root = "cache"\n', 'cache_root = "cache"\nstation_labels = false\n')
    (root / "dx" / "dx.toml").write_text(text)
    dx.unlink()
    path = root / "pool.toml"
    path.write_text(f'members = ["{labelled}", "{root / "dx" / "dx.toml"}"]\n')
    return path


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    return write_tiny_study(tmp_path_factory.mktemp("pool"))


def test_a_station_less_scan_is_no_ts1_item_and_changes_no_station_loss_term(study_file):
    study = load_study(str(study_file))
    rows = study_rows(study)
    part = open_study_part(rows, tuple(sorted({r.patient_id for r in rows})),
                           expected_settings(build_settings_for(str(study_file))))
    dx = np.array([d == "dx" for d in part.datasets])
    assert dx.sum() == 12 and part.patient_ids[int(np.flatnonzero(dx)[0])].startswith("dx/")
    assert not part.station_labelled[dx].any() and part.station_labelled[~dx].all()
    assert (part.station_status[dx] == -1).all()  # its N0 scans are not read as "every station benign"
    assert (part.n_stage[dx] >= 0).all()  # ... and keep their N-stage
    scans, _, _ = station_pairs(part)
    assert len(scans) and not dx[scans].any()

    settings = TrainSettings(**{"channels": (4, 8), "dropout": (0.0, 0.1), "patch_size_vox": 8, "margin_vox": 0})
    batches = ScanBatches(part, sampler_settings(settings, 0), "centroid")
    first_dx = int(np.flatnonzero(dx & (part.n_stage == 0))[0])
    labelled = [int(i) for i in np.flatnonzero(~dx)[:6]]
    with_dx = batches[_request(labelled + [first_dx])]
    without = batches[_request(labelled)]
    assert with_dx.station_labelled.tolist() == [True] * 6 + [False]
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 17, generator=generator)
    stage_logits = torch.randn(7, 4, generator=generator)
    loss_with = _loss(stage_logits, logits, with_dx)
    loss_without = _loss(stage_logits[:6], logits[:6], without)
    torch.testing.assert_close(loss_with.bce, loss_without.bce)  # the station term ignores the dx scan
    assert not torch.isclose(loss_with.ce, loss_without.ce)  # its N-stage term does not


def _request(items):
    from train.data import BatchRequest

    return BatchRequest(seed=0, items=tuple(items))


def _loss(stage_logits, station_logits, batch):
    return n_stage_loss(stage_logits, station_logits, batch.n_stage, batch.station_status, batch.masks,
                        batch.targets, LossWeights())


def test_ts1_on_a_study_trains_and_tests_on_the_labelled_member_only_and_ts2_predicts_every_scan(
        study_file, tmp_path):
    runs = tmp_path / "runs"
    common = ["--dataset", str(study_file), "--runs-dir", str(runs), "--max-epochs", "1", "--samples-per-epoch", "16"]
    assert main(["ts1", *common]) == 0
    assert main(["ts2", *common]) == 0
    folds = runs / "pool" / "folds_cN.json"
    assert folds.is_file()
    for stage in ("ts1", "ts2"):
        with open(runs / "pool" / stage / "fold0" / "predictions_test.csv") as f:
            rows = list(csv.DictReader(f))
        members = {r["patient_id"].split("/")[0] for r in rows}
        assert members == {"tiny", "dx"}  # both members have test scans; the N-stage is predicted for all
        assert {r["station_true"] for r in rows if r["patient_id"].startswith("dx/")} == {"-1"}
        assert {r["station_true"] for r in rows if r["patient_id"].startswith("tiny/")} >= {"0", "1"}
