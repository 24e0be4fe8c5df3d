"""Settings of `python -m evaluate` (a cohort report) and `python -m evaluate predict` (one new scan).

Defaults can be overridden per dataset in the dataset config's `[evaluate]` table, by `--config FILE` and by flags
(`cache.cli`).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cache.devices import Device


def _floats(help_text: str) -> dict:
    return {"help": help_text, "nargs": "+", "type": float}


@dataclass(frozen=True)
class EvaluateSettings:
    """A cohort report: the trained run's test predictions and every registered baseline on the same folds."""

    dataset: str = field(default="demo", metadata={"help": "dataset config or study name, or a TOML path"})
    run: str = field(default="", metadata={"help": "run folder holding fold<K>/ (e.g. runs/demo/ts1)"})
    folds: str = field(default="", metadata={"help": "folds to evaluate, e.g. '0-4' or '0,2' (empty: all)"})
    out: str = field(default="", metadata={"help": "report folder (empty: <run>/report)"})
    root: str = field(default="", metadata={"help": "dataset root (empty: from the dataset config/environment)"})
    cache_root: str = field(default="", metadata={"help": "cache root (empty: from the dataset config/environment)"})
    method_name: str = field(
        default="", metadata={"help": "name of the trained method in the tables (empty: its stage, e.g. TS1)"}
    )
    suv_thresholds: tuple[float, ...] = field(
        default=(2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5), metadata=_floats("SUVmax thresholds the baseline chooses from")
    )
    overlap_fractions: tuple[float, ...] = field(
        default=(0.05, 0.1, 0.2), metadata=_floats("lesion-overlap fractions o the overlap baseline chooses from")
    )
    lesion_source: Literal["auto", "cache", "builtin", "both"] = field(
        default="auto",
        metadata={"help": "lesion masks of the overlap baseline: the cache's /lesions (from the manifest), the "
                          "built-in PET segmenter, both (two baselines), or auto (cache when every scan has "
                          "one, else built-in)"},
    )
    lesion_suv_threshold: float = field(
        default=2.5, metadata={"help": "built-in lesion segmenter: voxels with SUV >= this are lesion candidates"}
    )
    lesion_min_volume_ml: float = field(
        default=0.2, metadata={"help": "built-in lesion segmenter: smaller connected components are dropped"}
    )
    n_permutations: int = field(default=10_000, metadata={"help": "permutation test draws (when not exact)"})
    n_bootstrap: int = field(
        default=1000, metadata={"help": "patient-bootstrap resamples per pooled metric's 95 % interval (0: none)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the permutation tests and the bootstrap"})
    n_qa_scans: int = field(default=3, metadata={"help": "scans that get a QA overlay figure"})
    truth_dir: str = field(
        default="truth", metadata={"help": "ground-truth folder (relative to the dataset root) for atlas analyses"}
    )
    atlas_subset_scans: int = field(
        default=0,
        metadata={"help": "atlas-subset analysis (every 3-of-N atlas combination, McNemar against all N): how many "
                          "test scans to re-register for it (0: skip, -1: all); costs one registration per scan"},
    )
    atlas_subset_size: int = field(default=3, metadata={"help": "atlases per subset in the atlas-subset analysis"})
    device: Device = field(default="auto", metadata={"help": "auto: CUDA when present"})

    @property
    def output_dir(self) -> Path:
        """Where the report goes: `out`, else <run>/report."""
        return Path(self.out) if self.out else Path(self.run) / "report"


@dataclass(frozen=True)
class PredictSettings:
    """One new scan through the whole chain, with a trained fold's model."""

    ct: str = field(default="", metadata={"help": "CT: NIfTI/NRRD/MHA file or DICOM series folder"})
    pet: str = field(default="", metadata={"help": "PET: DICOM series folder (Bq/ml, converted to SUV) or SUV NIfTI"})
    totalseg: str = field(default="", metadata={"help": "TotalSegmentator masks: multilabel file or folder (empty: "
                                                         "run TotalSegmentator, when installed)"})
    model: str = field(default="", metadata={"help": "run folder (its folds averaged, e.g. runs/demo/ts1) or one "
                                                      "fold's folder (runs/demo/ts1/fold0)"})
    atlas_bank: str = field(default="", metadata={"help": "atlas bank folder (empty: the model's dataset's bank)"})
    dataset: str = field(
        default="", metadata={"help": "dataset config whose preprocessing settings apply (empty: the model's)"}
    )
    tumor_side: Literal["R", "L", "unknown"] = field(
        default="unknown", metadata={"help": "side of the primary tumour, for the N-stage rules"}
    )
    pet_is_suv: bool = field(default=True, metadata={"help": "a NIfTI/NRRD/MHA PET holds SUV already"})
    probability_cutoff: float = field(default=0.5, metadata={"help": "a station is malignant at p >= this"})
    out: str = field(default="", metadata={"help": "output folder (empty: predict_<CT name>/ here)"})
    device: Device = field(default="auto", metadata={"help": "auto: CUDA when present"})

    @property
    def output_dir(self) -> Path:
        """Where the outputs go: `out`, else predict_<CT name>/ in the current folder."""
        return Path(self.out or f"predict_{Path(self.ct).name.split('.')[0]}")
