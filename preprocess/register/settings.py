"""Registration settings: one flat frozen dataclass, with presets in `configs/registration/<name>.toml`.

Distances are in mm; levels go coarse to fine. A deformable level of 0 mm means the data's own spacing, so the
`full` preset ends at the scan's resolution whatever it is, while `demo` stops at 4 mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cache.settings import SettingsError, from_toml
from configs import CONFIG_DIR

PRESET_DIR = CONFIG_DIR / "registration"


@dataclass(frozen=True)
class RegistrationSettings:
    """How every atlas of the bank is registered to a scan and how the warped station labels are fused."""

    # Channels (group names of preprocess.register.channels.STRUCTURE_GROUPS)
    linear_channels: tuple[str, ...] = field(
        default=("vertebrae", "ribs", "sternum", "trachea", "aorta", "heart"),
        metadata={"nargs": "+", "help": "structure groups the affine stage aligns (bones, airway, large vessels)"},
    )
    deformable_channels: tuple[str, ...] = field(
        default=("vertebrae", "ribs", "sternum", "trachea", "esophagus", "aorta", "heart", "pulmonary_vein",
                 "great_veins", "supra_aortic_arteries", "lung_left", "lung_right"),
        metadata={"nargs": "+", "help": "structure groups the deformable stage aligns"},
    )
    use_ct_channel: bool = field(default=False, metadata={"help": "add the windowed CT as a deformable channel"})
    ct_window_low_hu: float = field(default=-200.0, metadata={"help": "CT channel window: this HU maps to 0"})
    ct_window_high_hu: float = field(default=400.0, metadata={"help": "CT channel window: this HU maps to 1"})
    # Closed-form initialisation from paired structure centroids
    init_transform: Literal["translation", "similarity", "affine"] = field(
        default="similarity", metadata={"help": "model fitted to the paired centroids"}
    )
    init_outlier_mm: float = field(
        default=12.0, metadata={"help": "pairs whose residual exceeds this are dropped, worst first"}
    )
    init_min_voxels: int = field(default=20, metadata={"help": "structures smaller than this are not paired"})
    # Affine refinement
    linear_levels_mm: tuple[float, ...] = field(default=(8.0,), metadata={"nargs": "+", "help": "affine pyramid, mm"})
    linear_iterations: tuple[int, ...] = field(default=(60,), metadata={"nargs": "+", "help": "Adam steps per level"})
    linear_metric: Literal["soft_dice", "ssd"] = field(default="soft_dice", metadata={"help": "affine loss"})
    linear_learning_rate: float = field(default=0.01, metadata={"help": "Adam step of the affine parameters"})
    linear_translation_scale_mm: float = field(
        default=20.0, metadata={"help": "mm per unit of the translation parameters (sets their step size)"}
    )
    # Deformable (variational) stage
    deformable_levels_mm: tuple[float, ...] = field(
        default=(8.0, 4.0, 0.0), metadata={"nargs": "+", "help": "pyramid, coarse to fine, mm; 0 = the data's spacing"}
    )
    deformable_iterations: tuple[int, ...] = field(
        default=(80, 50, 30), metadata={"nargs": "+", "help": "iterations per level"}
    )
    force: Literal["demons", "ssd", "ncc"] = field(default="demons", metadata={"help": "force term"})
    force_gradient: Literal["symmetric", "fixed", "moving"] = field(
        default="symmetric", metadata={"help": "image gradient of the demons/SSD force"}
    )
    ncc_radius_vox: int = field(default=2, metadata={"help": "half width of the local NCC window, voxels"})
    time_step: float = field(default=1.0, metadata={"help": "tau: step of the field update"})
    regulariser: Literal["diffusive", "gaussian"] = field(default="diffusive", metadata={"help": "regulariser"})
    diffusive_alpha_vox2: float = field(
        default=0.5,
        metadata={"help": "alpha of (I - tau*alpha*Laplacian) in squared voxels of each level (larger = smoother)"},
    )
    gaussian_sigma_mm: float = field(default=3.0, metadata={"help": "sigma of the Gaussian regulariser, mm"})
    diffeomorphic: bool = field(
        default=False, metadata={"help": "diffeomorphic update by scaling and squaring (see diffeomorphic_update)"}
    )
    diffeomorphic_update: Literal["velocity", "compositive"] = field(
        default="velocity",
        metadata={"help": "velocity: u = exp(v), v updated additively; compositive: u <- R(u o exp(tau f))"},
    )
    stop_no_new_minimum_iterations: int = field(
        default=15, metadata={"help": "stop a level after this many iterations without a new minimum (0: off)"}
    )
    stop_line_fit_iterations: int = field(
        default=10, metadata={"help": "window of the line-fit stop rule, iterations (0: off)"}
    )
    stop_line_fit_slope: float = field(
        default=1e-3, metadata={"help": "stop when the fitted relative metric decrease per iteration is below this"}
    )
    # Output
    qa: bool = field(default=True, metadata={"help": "compute structure Dice and Jacobian QA per atlas and stage"})
    # Registration check (QA that is not circular, and its limits)
    qa_held_out_channels: tuple[str, ...] = field(
        default=(),
        metadata={"nargs": "*", "help": "structure groups left out of both registration stages and only scored by "
                                        "the QA, so their Dice tells how well the map fits where it was not fitted"},
    )
    qa_held_out_dice_min: float = field(
        default=0.0, metadata={"help": "flag a scan whose worst atlas has a lower held-out structure Dice (0: off); "
                                       "python -m preprocess.register.validate measures it on the bank"}
    )
    qa_jacobian_min: float = field(
        default=0.0, metadata={"help": "flag a scan whose deformation's Jacobian determinant goes below this"}
    )
    qa_jacobian_max: float = field(
        default=float("inf"), metadata={"help": "flag a scan whose deformation's Jacobian determinant exceeds this"}
    )

    def __post_init__(self) -> None:
        if len(self.linear_levels_mm) != len(self.linear_iterations):
            raise SettingsError(f"linear_levels_mm {self.linear_levels_mm} and linear_iterations "
                                f"{self.linear_iterations} must have the same length")
        if len(self.deformable_levels_mm) != len(self.deformable_iterations):
            raise SettingsError(f"deformable_levels_mm {self.deformable_levels_mm} and deformable_iterations "
                                f"{self.deformable_iterations} must have the same length")
        if not self.deformable_channels and not self.use_ct_channel:
            raise SettingsError("no deformable channel: give deformable_channels or use_ct_channel = true")
        driving = set(self.linear_channels) | set(self.deformable_channels)
        if driving & set(self.qa_held_out_channels):
            raise SettingsError(f"qa_held_out_channels {sorted(driving & set(self.qa_held_out_channels))} also drive "
                                "the registration (linear_channels or deformable_channels); a held-out structure "
                                "must be in neither")


def preset_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))


def registration_settings(preset: str = "full") -> RegistrationSettings:
    """The settings of preset `preset` ('full' or 'demo'), read from `configs/registration/<preset>.toml`."""
    path = PRESET_DIR / f"{preset}.toml"
    if not path.is_file():
        raise SettingsError(f"unknown registration preset {preset!r} ({path}); available: {', '.join(preset_names())}")
    return from_toml(RegistrationSettings, path)
