"""`predict` and the atlas-subset study through the real chain (phantom scans, atlas registration, train's
inference) with an untrained tiny model: the mechanics, not the accuracy. Slow: one registration per atlas."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from cache.build_settings import build_settings_for
from cache.dataset import load_dataset
from cache.settings import settings_dict
from cache.stations import station
from evaluate.__main__ import main
from evaluate.atlas_subsets import run_subset_study
from preprocess.nifti_labels import read_label_extension
from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.settings import PhantomSettings
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
