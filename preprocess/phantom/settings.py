"""Settings of `python -m preprocess.phantom`: what cohort to draw and where to write it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PhantomSettings:
    """One synthetic cohort. The same settings and seed give identical arrays and tables."""

    out: str = field(default="data/demo", metadata={"help": "output folder (the dataset root)"})
    patients: int = field(default=30, metadata={"help": "number of patients (one scan each)"})
    atlases: int = field(default=5, metadata={"help": "number of atlases in the bank"})
    seed: int = field(default=0, metadata={"help": "random seed of the whole cohort"})
    spacing_mm: float = field(default=2.0, metadata={"help": "isotropic CT voxel size, mm"})
    pet_spacing_mm: float = field(
        default=4.0, metadata={"help": "PET voxel size, mm (rounded to a whole multiple of spacing_mm)"}
    )
    dicom_pet_fraction: float = field(
        default=0.25, metadata={"help": "fraction of scans whose PET is a DICOM series in Bq/ml (else SUV NIfTI)"}
    )
    station_list_fraction: float = field(
        default=1.0, metadata={"help": "fraction of scans whose manifest lists positive stations (else N only)"}
    )
    extent_mm: tuple[float, ...] = field(
        default=(320.0, 260.0, 260.0), metadata={"help": "field of view (x, y, z) in mm", "nargs": 3, "type": float}
    )
    preview: bool = field(default=False, metadata={"help": "write PNG mid-slices per scan to OUT/preview/"})
    # Uptake of benign and malignant nodes, fitted with `python -m preprocess.phantom.calibrate` (200 patients,
    # SUVmax on the true station masks) to the paper's SUVmax-thresholding row of Table 4 only, never to our
    # models' results. Each help line names the figures the value was fitted to.
    benign_state_fractions: tuple[float, ...] = field(
        default=(0.58, 0.17, 0.25),
        metadata={"help": "fractions of node-negative (N0) patients whose benign nodes are all cold, mildly reactive "
                          "(several warm nodes) or granulomatous (many hot nodes); with the next setting, fitted to "
                          "the N-stage accuracy 0.50, sensitivity 0.51 and specificity 0.84 of thresholding",
                  "nargs": 3, "type": float},
    )
    benign_state_fractions_node_positive: tuple[float, ...] = field(
        default=(0.30, 0.45, 0.25),
        metadata={"help": "the same fractions for node-positive patients, where reactive uptake also drains from the "
                          "tumour and its metastases (about 45/30/25 over all patients of the cN mix); fitted to the "
                          "N-stage sensitivity 0.51 and accuracy 0.50 of thresholding",
                  "nargs": 3, "type": float},
    )
    mild_hot_stations: float = field(
        default=7.0, metadata={"help": "mean number of benign stations with a hot node in a mildly reactive "
                                       "patient; fitted to the chosen threshold 4 and the station specificity 0.84"}
    )
    granulomatous_hot_stations: float = field(
        default=9.0, metadata={"help": "mean number of benign stations with a hot node in a granulomatous patient; "
                                       "fitted to the station specificity 0.84 and N-stage accuracy 0.50"}
    )
    mild_hot_suv: float = field(
        default=5.5, metadata={"help": "median tissue SUV of a hot benign node in a mildly reactive patient (most "
                                       "show an SUVmax of 2.5-4 after blur); fitted to the chosen threshold 4"}
    )
    granulomatous_hot_suv: float = field(
        default=11.0, metadata={"help": "median tissue SUV of a hot benign node in a granulomatous patient (most "
                                        "show an SUVmax above 4); fitted to the station specificity 0.84"}
    )
    malignant_suv_at_10mm: float = field(
        default=18.0, metadata={"help": "median tissue SUV of a malignant node of 10 mm short axis (larger nodes are "
                                        "hotter); fitted to the chosen threshold 4 and station sensitivity 0.77"}
    )
    malignant_low_uptake_fraction: float = field(
        default=0.18, metadata={"help": "fraction of patients whose metastases are all low-avid (a tenth of the "
                                        "uptake); fitted to the station sensitivity 0.77 of thresholding"}
    )

    def __post_init__(self) -> None:
        if self.patients < 1 or self.atlases < 0:
            raise ValueError(f"patients must be >= 1 and atlases >= 0, got {self.patients} and {self.atlases}")
        if not 0.3 <= self.spacing_mm <= 6.0:
            raise ValueError(f"spacing_mm must be between 0.3 and 6 mm, got {self.spacing_mm}")
        for name in ("dicom_pet_fraction", "station_list_fraction", "malignant_low_uptake_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if len(self.extent_mm) != 3:
            raise ValueError(f"extent_mm must hold 3 values (x, y, z), got {self.extent_mm}")
        for name in ("benign_state_fractions", "benign_state_fractions_node_positive"):
            fractions = getattr(self, name)
            if len(fractions) != 3 or min(fractions) < 0.0 or abs(sum(fractions) - 1.0) > 1e-6:
                raise ValueError(f"{name} must be 3 non-negative values (none, mild, granulomatous) "
                                 f"that sum to 1, got {fractions}")
        for name in ("mild_hot_stations", "granulomatous_hot_stations"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("mild_hot_suv", "granulomatous_hot_suv", "malignant_suv_at_10mm"):
            if getattr(self, name) <= 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def pet_factor(self) -> int:
        """PET voxels are this many CT voxels wide (>= 1)."""
        return max(1, round(self.pet_spacing_mm / self.spacing_mm))
