import shutil
import zipfile

import numpy as np
import pytest
import torch

from cache.build_settings import BuildSettings, build_settings_for, expected_settings
from cache.dataset import load_dataset
from cache.manifest import read_manifest
from train.__main__ import main
from train.bundle import BundleError, export_bundle, unpack_bundle
from train.data import open_part
from train.predict import load_models


@pytest.fixture(scope="module")
def run_with_bank(tmp_path_factory):
    """Two TS1 folds on the tiny cohort, whose dataset names an atlas bank folder."""
    from tests.train.conftest import write_tiny_cohort

    root = tmp_path_factory.mktemp("tiny")
    config = write_tiny_cohort(root)
    (root / "atlases" / "atlas-01").mkdir(parents=True)
    (root / "atlases" / "atlas-01" / "atlas.toml").write_text("name = 'a'\n")
    config.write_text(config.read_text().replace('cache_root = "cache"\n', 'cache_root = "cache"\n'
                                                 f'atlas_bank = "{root / "atlases"}"\n'))
    for fold in ("0", "1"):
        assert main(["ts1", "--dataset", str(config), "--runs-dir", str(root / "runs"), "--fold", fold,
                     "--max-epochs", "1"]) == 0
    return root, config


def test_a_moved_bundle_predicts_like_the_run(run_with_bank, tmp_path):
    root, config = run_with_bank
    run = root / "runs" / "tiny" / "ts1"
    assert main(["export", str(run), str(tmp_path / "model.zip")]) == 0
    moved = tmp_path / "elsewhere" / "m.zip"
    moved.parent.mkdir()
    shutil.move(tmp_path / "model.zip", moved)
    bundle = unpack_bundle(moved, tmp_path / "unpacked")
    info = bundle.info
    assert info["folds"] == ["fold0", "fold1"] and info["stage"] == "ts1" and len(info["stations"]) == 17
    assert info["preprocessing"] == expected_settings(build_settings_for(str(config)))
    assert "optimizer" not in torch.load(bundle.folder / "fold0" / "best.pt", weights_only=True)
    assert bundle.dataset_config.read_text() == config.read_text()
    dataset = load_dataset(str(config))
    rows = list(read_manifest(dataset.manifest_path, dataset.root, check_files=False).rows)
    part = open_part(dataset, rows, ("P00", "P06"), expected_settings(build_settings_for(str(config))))
    from train.inference import predict_scans

    bundled = [predict_scans(m, part.reader, part.tumor_sides, part.rule_set, torch.device("cpu")).station_prob
               for m in load_models(bundle.folder)]
    original = [predict_scans(m, part.reader, part.tumor_sides, part.rule_set, torch.device("cpu")).station_prob
                for m in load_models(run)]
    for a, b in zip(bundled, original, strict=True):
        assert np.array_equal(a, b, equal_nan=True)


def test_other_preprocessing_or_atlas_bank_is_refused_with_the_difference(run_with_bank, tmp_path):
    root, config = run_with_bank
    bundle = unpack_bundle(export_bundle(root / "runs" / "tiny" / "ts1", tmp_path / "m.zip"), tmp_path / "u")
    digest = bundle.info["atlas_bank_digest"]
    same = expected_settings(build_settings_for(str(config)))
    bundle.check_inputs(same, digest, "here")  # the training settings pass
    with pytest.raises(BundleError, match=r"BuildSettings.spacing_mm: bundle 2.0, current 4.0"):
        bundle.check_inputs(expected_settings(BuildSettings(spacing_mm=4.0, registration_preset="demo")), digest,
                            "dataset X")
    with pytest.raises(BundleError, match="atlas bank digest: bundle"):
        bundle.check_inputs(same, "0" * 32, "dataset X")


def test_a_zip_without_bundle_json_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as archive:
        archive.writestr("fold0/best.pt", b"")
    with pytest.raises(BundleError, match="not a model bundle"):
        unpack_bundle(tmp_path / "x.zip", tmp_path / "u")
    (tmp_path / "y.zip").write_text("no zip")
    with pytest.raises(BundleError, match="not a readable zip"):
        unpack_bundle(tmp_path / "y.zip", tmp_path / "u")
