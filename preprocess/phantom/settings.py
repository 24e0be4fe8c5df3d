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
        default=(320.0, 260.0, 240.0), metadata={"help": "field of view (x, y, z) in mm", "nargs": 3, "type": float}
    )
    preview: bool = field(default=False, metadata={"help": "write PNG mid-slices per scan to OUT/preview/"})

    def __post_init__(self) -> None:
        if self.patients < 1 or self.atlases < 0:
            raise ValueError(f"patients must be >= 1 and atlases >= 0, got {self.patients} and {self.atlases}")
        if not 0.3 <= self.spacing_mm <= 6.0:
            raise ValueError(f"spacing_mm must be between 0.3 and 6 mm, got {self.spacing_mm}")
        for name in ("dicom_pet_fraction", "station_list_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if len(self.extent_mm) != 3:
            raise ValueError(f"extent_mm must hold 3 values (x, y, z), got {self.extent_mm}")

    @property
    def pet_factor(self) -> int:
        """PET voxels are this many CT voxels wide (>= 1)."""
        return max(1, round(self.pet_spacing_mm / self.spacing_mm))
