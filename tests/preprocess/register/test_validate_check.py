"""The registration check end to end: a scan whose atlas bank has its held-out structures drawn in the wrong place
is flagged in /qc, by the preprocess summary, by `python -m cache info` and in predict's flags; the demo preset
holds structures out of registration."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk

from cache import schema
from cache.__main__ import main as cache_main
from cache.reader import cache_files
from evaluate.predict import qa_flags
from preprocess.__main__ import main as preprocess_main
from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.settings import PhantomSettings
from preprocess.register import registration_settings
from preprocess.register.channels import STRUCTURE_GROUPS
from preprocess.totalseg_labels import label_ids

HELD_OUT = registration_settings("demo").qa_held_out_channels


def _broken_cohort(root: Path) -> Path:
    """One phantom scan and two atlases at 6 mm whose held-out structures are drawn 18 mm off; its config."""
    generate_cohort(PhantomSettings(out=str(root), patients=1, atlases=2, seed=5, spacing_mm=6.0,
                                    pet_spacing_mm=6.0, dicom_pet_fraction=0.0))
    ids = label_ids("v2")
    held = np.array([ids[name] for group in HELD_OUT for name in STRUCTURE_GROUPS[group]])
    for path in sorted((root / "atlases").glob("*/totalseg.nii.gz")):
        image = sitk.ReadImage(str(path))
        labels = sitk.GetArrayFromImage(image)
        moved = np.where(np.isin(labels, held), 0, labels)
        source = np.roll(np.where(np.isin(labels, held), labels, 0), 3, axis=1)  # along y, 3 voxels
        moved[source > 0] = source[source > 0]
        out = sitk.GetImageFromArray(moved)
        out.CopyInformation(image)
        sitk.WriteImage(out, str(path))
    config = root / "tiny.toml"
    config.write_text(f'root = "{root}"\ncache_root = "{root / "cache"}"\ntotalseg_version = "v2"\n'
                      '[preprocess]\nspacing_mm = 6.0\nregistration_preset = "demo"\n')
    return config


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory) -> tuple[Path, str]:
    """The cache file and the printed summary of the run on the broken cohort."""
    config = _broken_cohort(tmp_path_factory.mktemp("broken"))
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert preprocess_main(["--dataset", str(config), "--device", "cpu"]) == 0
    return cache_files(config.parent / "cache" / "tiny")[0], buffer.getvalue()


def test_the_demo_preset_holds_structures_out_of_registration():
    settings = registration_settings("demo")
    assert HELD_OUT and not set(HELD_OUT) & set(settings.deformable_channels + settings.linear_channels)
    assert settings.qa_held_out_dice_min > 0.5 and settings.qa_jacobian_max < float("inf")  # limits of the demo bank


def test_a_scan_mapped_from_atlases_with_misplaced_structures_is_flagged(broken_run, capsys):
    path, printed = broken_run
    with h5py.File(path, "r") as f:
        check = dict(f[schema.QC_REGISTRATION_CHECK_GROUP].attrs)
        atlas = next(iter(f["qc/registration"].values()))
        assert set(atlas["deformable/held_out_dice"].attrs) == set(HELD_OUT)
        assert set(atlas["deformable/dice"].attrs).isdisjoint(HELD_OUT)
    assert check["driving_dice"] > 0.8 and check["held_out_dice"] < check["driving_dice"] - 0.4  # map fine, check not
    assert check["flags"] == "held_out_dice"
    assert check["limit_held_out_dice_min"] == registration_settings("demo").qa_held_out_dice_min
    assert "1 flagged by the registration check" in printed and "FLAGGED" in printed
    assert cache_main(["info", str(path)]) == 0
    assert "FLAG held-out Dice below" in capsys.readouterr().out
    assert qa_flags({"dice_min": 0.9, "folding_max": 0.0}, check=check) == "held_out_dice"
