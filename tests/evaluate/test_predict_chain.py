"""`predict` and the atlas-subset study through the real chain (phantom scans, atlas registration, train's
inference) with an untrained tiny model: the mechanics, not the accuracy. Slow: one registration per atlas."""

import csv
import dataclasses
import datetime as dt
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from pydicom.uid import generate_uid

from cache.build_settings import build_settings_for
from cache.dataset import load_dataset
from cache.grid import Grid
from cache.settings import settings_dict
from cache.stations import station, station_names
from evaluate.__main__ import main
from evaluate.atlas_subsets import run_subset_study
from evaluate.batch_predict import BatchPredictSettings, input_rows
from evaluate.predict import stage_scan, staging_for
from preprocess.nifti_labels import read_label_extension
from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.dicom_ct import write_ct_series
from preprocess.phantom.settings import PhantomSettings
from train.bundle import BundleError, export_bundle
from train.checkpoint import save_checkpoint
from train.model import build_model
from train.settings import TrainSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> tuple[Path, Path]:
    """Two phantom scans (the first with a DICOM PET) and three atlases at 4 mm; an untrained fold0 model."""
    folder = tmp_path_factory.mktemp("chain")
    root = folder / "data"
    generate_cohort(PhantomSettings(out=str(root), patients=2, atlases=3, spacing_mm=4.0, pet_spacing_mm=4.0,
                                    dicom_pet_fraction=0.5))
    config = folder / "tiny.toml"
    config.write_text(f'root = "{root}"\ncache_root = "{folder / "cache"}"\ntotalseg_version = "v2"\n'
                      '[preprocess]\nspacing_mm = 4.0\nregistration_preset = "demo"\n')
    settings = TrainSettings(dataset=str(config), channels=(4, 8), dropout=(0.0, 0.1), patch_size_vox=8)
    torch.manual_seed(0)
    (folder / "run" / "fold0").mkdir(parents=True)
    save_checkpoint(folder / "run" / "fold0" / "best.pt", {"model": build_model(settings).state_dict(),
                                                           "settings": settings_dict(settings)["TrainSettings"],
                                                           "stage": "ts1"})
    return config, folder


def test_predict_a_dicom_pet_scan(chain):
    config, folder = chain
    scan = Path(load_dataset(str(config)).root) / "scans" / "demo-001-s0"
    assert (scan / "pet_dicom").is_dir()
    out = folder / "predict"
    assert main(["predict", "--ct", str(scan / "ct.nii.gz"), "--pet", str(scan / "pet_dicom"), "--totalseg",
                 str(scan / "totalseg.nii.gz"), "--model", str(folder / "run" / "fold0"), "--tumor-side", "L",
                 "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads((out / "prediction.json").read_text())
    assert result["tumor_side"] == "L" and result["n_stage"] in (0, 1, 2, 3)
    assert len(result["stations"]) == 17 and {"register", "inference", "total"} <= set(result["timings_s"])
    mask, ct = sitk.ReadImage(str(out / "stations.nii.gz")), sitk.ReadImage(str(scan / "ct.nii.gz"))
    assert mask.GetSize() == ct.GetSize() and mask.GetOrigin() == ct.GetOrigin()
    codes = set(np.unique(sitk.GetArrayFromImage(mask)).tolist()) - {0}
    present = {i + 1 for i, s in enumerate(result["stations"]) if s["present"]}
    assert codes == present
    assert read_label_extension(out / "stations.nii.gz")[station("7").code] == "7"
    assert (out / "stations.ctbl").is_file() and (out / "stations.itksnap.txt").is_file()
    labels = sitk.GetArrayFromImage(mask)
    probability = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "probability.nii.gz")))
    for code in codes:  # each station's voxels carry its probability from prediction.json
        assert np.allclose(probability[labels == code], result["stations"][code - 1]["probability"], atol=1e-6)
    suv = sitk.ReadImage(str(out / "suv.nii.gz"))
    assert suv.GetSize() == ct.GetSize() and sitk.GetArrayFromImage(suv).max() > 1
    assert (out / "qa.png").stat().st_size > 10_000


def test_atlas_subset_study(chain):
    config, folder = chain
    dataset = load_dataset(str(config))
    study = run_subset_study(dataset, build_settings_for(str(config)), folder / "run",
                             [("demo-002", "demo-002-s0", 0)], 2, "cpu")
    assert len(study.results) == 3  # 2 of 3 atlases
    assert study.pred_all.shape == (1, 17) and all(r.n_stations == 17 for r in study.results)
    assert {len(r.atlases) for r in study.results} == {2}


def test_batch_predict_averages_the_folds_and_reports_a_failed_scan(chain):
    """Two folds averaged over a folder of scans, one of them broken: the rest is staged, the failure named, exit
    1; each station's probability equals the mean of the single-fold predictions."""
    config, folder = chain
    run = folder / "run2"
    (run / "fold0").mkdir(parents=True)
    shutil.copy(folder / "run" / "fold0" / "best.pt", run / "fold0" / "best.pt")
    settings = TrainSettings(dataset=str(config), channels=(4, 8), dropout=(0.0, 0.1), patch_size_vox=8, fold=1)
    torch.manual_seed(1)
    (run / "fold1").mkdir()
    save_checkpoint(run / "fold1" / "best.pt", {"model": build_model(settings).state_dict(),
                                                "settings": settings_dict(settings)["TrainSettings"], "stage": "ts1"})
    inputs = folder / "inputs"
    (inputs / "bad").mkdir(parents=True)
    (inputs / "bad" / "ct.nii.gz").write_text("not an image")
    (inputs / "bad" / "pet.nii.gz").write_text("not an image")
    (inputs / "good").symlink_to(Path(load_dataset(str(config)).root) / "scans" / "demo-002-s0")
    out = folder / "batch"
    assert main(["batch", "--input", str(inputs), "--out", str(out), "--model", str(run), "--device", "cpu"]) == 1
    with open(out / "summary.csv", newline="") as f:
        rows = {r["scan_id"]: r for r in csv.DictReader(f)}
    assert rows["bad"]["status"] == "failed" and "bad" in rows["bad"]["error"] and rows["bad"]["p_7"] == ""
    good = rows["good"]
    assert good["status"] == "ok" and good["folds"] == "2" and good["error"] == ""
    assert good["n_stage_if_R"] in "0123" and good["qa_dice_min"] != ""
    # single folds on the same cache file (reused, not registered again)
    staging = staging_for(BatchPredictSettings(model=str(run), device="cpu"), out)
    row = input_rows(inputs)[1]
    singles = [stage_scan(row, dataclasses.replace(staging, models=(m,)), folder / f"single{k}")
               for k, m in enumerate(staging.models)]
    for k, name in enumerate(station_names()):
        values = [s.stations[k].probability for s in singles]
        if math.isnan(values[0]):
            assert good[f"p_{name}"] == ""
            continue
        assert float(good[f"p_{name}"]) == pytest.approx(np.mean(values), abs=1e-6)
        assert float(good[f"sd_{name}"]) == pytest.approx(np.std(values), abs=1e-6)
    assert (out / "good__good" / "stations.nii.gz").is_file() and (out / "good__good" / "prediction.json").is_file()


def test_predict_on_a_dicom_ct_writes_a_seg_on_its_series(chain):
    """The scan's CT as a real DICOM series (the phantom's writer): the stations come back as DICOM SEG with 17
    segments on that series' frame of reference, each frame on one of its slices."""
    config, folder = chain
    scan = Path(load_dataset(str(config)).root) / "scans" / "demo-002-s0"
    ct = sitk.ReadImage(str(scan / "ct.nii.gz"))
    grid = Grid.from_sitk(ct)
    dicom = folder / "ct_dicom"
    write_ct_series(dicom, sitk.GetArrayFromImage(ct).astype(np.int16), grid, "demo-002",
                    dt.datetime(2026, 1, 2, 9, 0), "chain", generate_uid(entropy_srcs=["s"]),
                    generate_uid(entropy_srcs=["f"]))
    out = folder / "predict_dicom_ct"
    assert main(["predict", "--ct", str(dicom), "--pet", str(scan / "pet.nii.gz"), "--totalseg",
                 str(scan / "totalseg.nii.gz"), "--model", str(folder / "run" / "fold0"), "--out", str(out),
                 "--device", "cpu"]) == 0
    seg = pydicom.dcmread(out / "stations.seg.dcm")
    source = {pydicom.dcmread(p).SOPInstanceUID for p in dicom.iterdir()}
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 17
    assert seg.FrameOfReferenceUID == pydicom.dcmread(next(dicom.iterdir())).FrameOfReferenceUID
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced <= source and len(referenced) > 0
    present = {s["station"] for s in json.loads((out / "prediction.json").read_text())["stations"] if s["present"]}
    numbers = {f.SegmentIdentificationSequence[0].ReferencedSegmentNumber for f in seg.PerFrameFunctionalGroupsSequence}
    assert numbers == {station(name).code for name in present}


def test_predict_from_a_moved_model_bundle_and_a_refused_one(chain):
    config, folder = chain
    bundle = folder / "moved" / "model.zip"
    bundle.parent.mkdir()
    export_bundle(folder / "run", folder / "model.zip")
    shutil.move(folder / "model.zip", bundle)
    scan = Path(load_dataset(str(config)).root) / "scans" / "demo-002-s0"
    argv = ["predict", "--ct", str(scan / "ct.nii.gz"), "--pet", str(scan / "pet.nii.gz"), "--totalseg",
            str(scan / "totalseg.nii.gz"), "--model", str(bundle), "--device", "cpu"]
    other = folder / "other.toml"
    other.write_text(config.read_text().replace("spacing_mm = 4.0", "spacing_mm = 3.0"))
    with pytest.raises(BundleError, match=r"BuildSettings.spacing_mm: bundle 4.0, current 3.0"):
        main([*argv, "--out", str(folder / "refused"), "--dataset", str(other)])
    assert main([*argv, "--out", str(folder / "from_bundle")]) == 0
    result = json.loads((folder / "from_bundle" / "prediction.json").read_text())
    assert result["folds"] == 1 and result["model"] == str(bundle) and result["n_stage_by_side"]["R"] in (0, 1, 2, 3)
