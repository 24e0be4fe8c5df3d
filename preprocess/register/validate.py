"""Leave-one-atlas-out: how well the atlas bank maps stations, scored on the bank's own expert labels.

`python -m preprocess.register.validate --atlas-bank DIR --out DIR` takes each atlas in turn as the scan and the
others as its bank, registers and fuses exactly as `map_stations` does for a scan, and scores the stations
against the held-out atlas' own labels: Dice and symmetric mean surface distance (mm) per station, for the fused
vote, for each single atlas, and for both after the linear stage alone. This is the node-free analogue of the
paper's node-to-station check, on the atlases a team already has. Outputs in `--out`: `loao_scores.csv` (one row
per held-out atlas, method, source atlas and station), `loao_stations.csv` (one row per station, means over
held-out atlases), `loao_structures.csv` (structure Dice per group, driving or held out of the registration),
`loao.md` (both tables in markdown, and what is left of the paper's eight-class structure check),
`qa_limits.toml` and `validate.log`.

`qa_limits.toml` holds the limits of the registration check (`preprocess.register.qa.registration_check`) as
preset keys to copy into the registration preset that maps the scans; a scan beyond them is flagged. A scan's check
takes the worst of its registrations (one per atlas of the bank), so the limits are not the extremes that the
atlas-to-atlas registrations reached (a scan as good as the atlases would cross those by chance alone, in 5 scans
of 25 for a bank of 5) but their mean -/+ z standard deviations, z such that the worst of the bank's registrations
crosses a limit by chance in 1 scan of 20 (`CHANCE_FLAG_RATE`; normal values assumed).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage, stats

from cache.build_settings import RegistrationPreset
from cache.cli import Command
from cache.stations import station_names
from preprocess.register.__main__ import registration_presets
from preprocess.register.atlas_bank import Atlas, AtlasBank, AtlasBankError, load_atlas_bank
from preprocess.register.fusion import StationMap
from preprocess.register.mapping import map_stations
from preprocess.register.settings import RegistrationSettings

# (method, what it scores): the fused vote and single atlases, after the deformable stage and after the linear one.
METHODS = ("fused", "single", "fused_linear", "single_linear")
# The paper's structure check scores eight TotalSegmentator v1 classes: trachea, oesophagus, pulmonary artery and
# five parts of the heart. v2 'total' masks (and v1 masks as read here, configs/totalsegmentator/v1_total.toml)
# have one 'heart' and no pulmonary artery, so what is left of it is these three groups.
PAPER_CHECK_GROUPS = ("trachea", "esophagus", "heart")
# How often a scan registered as well as the atlases register to each other may be flagged by each limit.
CHANCE_FLAG_RATE = 0.05


@dataclass(frozen=True)
class ValidateSettings:
    """Leave-one-atlas-out validation of an atlas bank: which bank, how it is read, where the tables go."""

    atlas_bank: str = field(
        default="", metadata={"help": "atlas bank folder (format: docs/architecture.md#the-atlas-bank)"}
    )
    out: str = field(default="", metadata={"help": "output folder for the tables and the log"})
    preset: RegistrationPreset = field(default="full", metadata={"help": "registration preset"})
    spacing_mm: float = field(default=1.0, metadata={"help": "isotropic working spacing, mm (as the scans')"})
    crop_margin_mm: float = field(default=20.0, metadata={"help": "margin around the lungs+trachea box, mm"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "registration device"})
    atlas_batch: str = field(
        default="auto", metadata={"help": "atlases registered at once: auto (as many as memory allows) or a number"}
    )
    max_memory_gb: float = field(
        default=0.0, metadata={"help": "memory the registration may use, GiB (0: what the device has available)"}
    )


@dataclass(frozen=True)
class StationScore:
    """One station's Dice and symmetric mean surface distance (mm) of one method on one held-out atlas.

    NaN Dice: the station is in neither labelling; NaN distance: it is missing from one of them."""

    held_out: str
    method: str
    atlas: str  # the single atlas scored, or "all" for a fused vote
    station: str
    truth_voxels: int  # the station's voxels in the held-out atlas' own labels
    dice: float
    msd_mm: float


@dataclass(frozen=True)
class LoaoResult:
    scores: tuple[StationScore, ...]
    final_qa: tuple[dict, ...]  # the QA records after the deformable stage of every atlas-to-atlas registration
    held_out: tuple[str, ...]


def station_dice(truth: np.ndarray, labels: np.ndarray, n_codes: int) -> np.ndarray:
    """(n_codes,) Dice of codes 1..n_codes between two label arrays; NaN where a code is in neither."""
    joint = np.bincount(truth.ravel().astype(np.int64) * (n_codes + 1) + labels.ravel(),
                        minlength=(n_codes + 1) ** 2).reshape(n_codes + 1, n_codes + 1)
    total = (joint.sum(1) + joint.sum(0))[1:].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * joint.diagonal()[1:] / total, np.nan)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def mean_surface_distance(a: np.ndarray, b: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Symmetric mean surface distance (mm) of two boolean (z, y, x) masks: the mean, over the surface voxels of
    both, of the distance to the other's surface; NaN when either is empty. Computed in their common box."""
    if not a.any() or not b.any():
        return float("nan")
    inside = np.argwhere(a | b)
    box = tuple(slice(lo, hi + 1) for lo, hi in zip(inside.min(0), inside.max(0), strict=True))
    surface_a, surface_b = _surface(a[box]), _surface(b[box])
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing_mm)[surface_a]
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing_mm)[surface_b]
    return float((to_b.sum() + to_a.sum()) / (len(to_b) + len(to_a)))


def score_labels(truth: np.ndarray, labels: np.ndarray, spacing_mm: float, held_out: str, method: str,
                 atlas: str) -> list[StationScore]:
    """Dice and mean surface distance of every station of `labels` against `truth` (same grid)."""
    names = station_names()
    dice = station_dice(truth, labels, len(names))
    voxels = np.bincount(truth.ravel(), minlength=len(names) + 1)
    spacing = (spacing_mm,) * 3
    return [StationScore(held_out, method, atlas, name, int(voxels[code]), float(dice[code - 1]),
                         mean_surface_distance(truth == code, labels == code, spacing) if np.isfinite(dice[code - 1])
                         else float("nan"))
            for code, name in enumerate(names, start=1)]


def held_out_scores(held: Atlas, station_map: StationMap, spacing_mm: float) -> list[StationScore]:
    """Every method's station scores on one held-out atlas, from the map of the other atlases onto it."""
    scores = score_labels(held.stations, station_map.labels, spacing_mm, held.name, "fused", "all")
    scores += score_labels(held.stations, station_map.linear_labels, spacing_mm, held.name, "fused_linear", "all")
    for own in station_map.atlas_labels:
        scores += score_labels(held.stations, own.deformable, spacing_mm, held.name, "single", own.atlas)
        scores += score_labels(held.stations, own.linear, spacing_mm, held.name, "single_linear", own.atlas)
    return scores


def leave_one_atlas_out(bank: AtlasBank, registration: RegistrationSettings, settings: ValidateSettings,
                        ) -> LoaoResult:
    """Register the other atlases of `bank` to each atlas in turn (as `map_stations` maps a scan) and score."""
    if len(bank.atlases) < 3:
        raise AtlasBankError(f"atlas bank {bank.path} holds {len(bank.atlases)} atlas(es); leave-one-atlas-out "
                             "needs at least 3 (two to fuse for each held-out one)")
    scores: list[StationScore] = []
    final_qa: list[dict] = []
    for n, held in enumerate(bank.atlases):
        others = dataclasses.replace(bank, atlases=bank.atlases[:n] + bank.atlases[n + 1:])
        station_map = map_stations(held.ct_hu, held.structures, held.grid, others, registration, settings.device,
                                   settings.atlas_batch, settings.max_memory_gb, f"atlas {held.name}",
                                   keep_atlas_labels=True)
        scores += held_out_scores(held, station_map, bank.spacing_mm)
        final_qa += [r for r in station_map.qa if r["stage"] == "deformable"]  # the map itself is let go
        fused = _mean([s.dice for s in scores if s.held_out == held.name and s.method == "fused"])
        print(f"held out {held.name} ({n + 1}/{len(bank.atlases)}): fused station Dice {fused:.3f}, "
              f"{station_map.timings_s['total']:.1f} s")
    return LoaoResult(tuple(scores), tuple(final_qa), bank.names)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def station_rows(scores: Sequence[StationScore]) -> list[dict[str, float | str | int]]:
    """One row per station with a label in some held-out atlas: held-out atlases that have it, and per method
    the mean Dice and mean surface distance (over held-out atlases, and over source atlases for single ones);
    a last row 'mean' averages the stations."""
    rows = []
    for name in station_names():
        own = [s for s in scores if s.station == name]
        if not any(np.isfinite(s.dice) for s in own):
            continue
        with_station = len({s.held_out for s in own if s.truth_voxels > 0})
        row: dict[str, float | str | int] = {"station": name, "held_out_with_station": with_station}
        for method in METHODS:
            row[f"dice_{method}"] = _mean([s.dice for s in own if s.method == method])
        for method in METHODS:
            row[f"msd_{method}_mm"] = _mean([s.msd_mm for s in own if s.method == method])
        rows.append(row)
    if rows:
        mean = {key: _mean([float(r[key]) for r in rows]) for key in rows[0] if key != "station"}
        rows.append({"station": "mean", **mean, "held_out_with_station": ""})
    return rows


def markdown(rows: Sequence[dict], held_out: Sequence[str], preset: str) -> str:
    """The per-station table as markdown, under a line naming the bank's atlases and the preset."""
    header = ["station", "held-out atlases with it", "Dice fused", "Dice single (mean)", "Dice fused, linear only",
              "Dice single, linear only", "MSD fused (mm)", "MSD single (mm)", "MSD fused, linear (mm)",
              "MSD single, linear (mm)"]
    lines = [f"Leave-one-atlas-out over {len(held_out)} atlases ({', '.join(held_out)}), preset {preset}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(v) if isinstance(v, (str, int)) else f"{v:.3f}" if "dice" in k else f"{v:.2f}"
                 for k, v in row.items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def structure_rows(final: Sequence[dict]) -> list[dict[str, float | str | int]]:
    """One row per structure group, over the QA records `final` (after the deformable stage): whether it drove
    the registration or was held out of it, and its mean and worst Dice."""
    rows = []
    for role, key in (("driving", "dice"), ("held out", "held_out_dice")):
        for group in dict.fromkeys(g for r in final for g in r[key]):
            values = [r[key][group] for r in final if group in r[key]]
            rows.append({"group": group, "role": role, "registrations": len(values),
                         "dice_mean": _mean(values), "dice_min": float(min(values))})
    return rows


def paper_check_text(final: Sequence[dict]) -> str:
    """The paper's eight-class structure check as far as the masks allow (`PAPER_CHECK_GROUPS`): the mean Dice of
    those groups per moving atlas, their range over atlases (the paper: 0.85 to 0.89)."""
    per_atlas: dict[str, list[float]] = {}
    for record in final:
        scores = {**record["dice"], **record["held_out_dice"]}
        if all(g in scores for g in PAPER_CHECK_GROUPS):
            per_atlas.setdefault(record["atlas"], []).append(float(np.mean([scores[g] for g in PAPER_CHECK_GROUPS])))
    if not per_atlas:
        return "The paper's structure check: none of the registrations had all of " + ", ".join(PAPER_CHECK_GROUPS)
    means = [float(np.mean(v)) for v in per_atlas.values()]
    return (f"The paper's structure check, reduced to {', '.join(PAPER_CHECK_GROUPS)} (TotalSegmentator v2 'total' "
            f"has one heart class and no pulmonary artery): mean Dice {min(means):.3f} to {max(means):.3f} "
            f"depending on the moving atlas (the paper, eight v1 classes: 0.85 to 0.89).")


def write_tables(out: Path, result: LoaoResult, preset: str) -> list[dict]:
    """loao_scores.csv, loao_stations.csv, loao_structures.csv and loao.md in `out`; returns the station rows."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "loao_scores.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[x.name for x in dataclasses.fields(StationScore)])
        writer.writeheader()
        writer.writerows(dataclasses.asdict(s) for s in result.scores)
    rows = station_rows(result.scores)
    with open(out / "loao_stations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    structures = structure_rows(result.final_qa)
    with open(out / "loao_structures.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(structures[0]))
        writer.writeheader()
        writer.writerows(structures)
    structure_lines = ["| structure group | role | registrations | Dice mean | Dice worst |", "|---|---|---|---|---|"]
    structure_lines += [f"| {r['group']} | {r['role']} | {r['registrations']} | {r['dice_mean']:.3f} | "
                        f"{r['dice_min']:.3f} |" for r in structures]
    (out / "loao.md").write_text("\n".join([markdown(rows, result.held_out, preset),
                                            "Structure Dice after the deformable stage:", "", *structure_lines, "",
                                            paper_check_text(result.final_qa), ""]))
    return rows


def observed_limits(final: Sequence[dict]) -> dict[str, float]:
    """The registrations' QA after the deformable stage: worst held-out structure Dice (NaN when none was held
    out), lowest and highest Jacobian determinant, the mean and standard deviation over registrations of the
    held-out Dice and of each registration's Jacobian minimum and maximum; and the mean driving Dice."""
    held = [r["held_out_dice_mean"] for r in final if np.isfinite(r["held_out_dice_mean"])]
    lows, highs = [r["jacobian_min"] for r in final], [r["jacobian_max"] for r in final]
    return {"held_out_dice_min": min(held, default=float("nan")), "held_out_dice": _mean(held),
            "held_out_dice_sd": _sd(held), "driving_dice": _mean([r["dice_mean"] for r in final]),
            "jacobian_min": min(lows), "jacobian_max": max(highs),
            "jacobian_min_mean": _mean(lows), "jacobian_min_sd": _sd(lows),
            "jacobian_max_mean": _mean(highs), "jacobian_max_sd": _sd(highs),
            "registrations": len(final)}


def _sd(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def chance_z(n_atlases: int, rate: float = CHANCE_FLAG_RATE) -> float:
    """Standard deviations from the mean at which the worst of `n_atlases` normal values crosses by chance with
    probability `rate`."""
    return float(-stats.norm.ppf(1.0 - (1.0 - rate) ** (1.0 / n_atlases)))


def limit_values(observed: dict[str, float], n_atlases: int) -> dict[str, float]:
    """The registration check's limits as preset keys for scans mapped with `n_atlases` atlases: mean -/+
    `chance_z` standard deviations of `observed_limits` (rounded outwards); a held-out Dice limit of 0 (off)
    when no group was held out."""
    z = chance_z(n_atlases)
    held = observed["held_out_dice"] - z * observed["held_out_dice_sd"]
    return {"qa_held_out_dice_min": math.floor(held * 1000) / 1000 if math.isfinite(held) else 0.0,
            "qa_jacobian_min": math.floor((observed["jacobian_min_mean"] - z * observed["jacobian_min_sd"]) * 100)
            / 100,
            "qa_jacobian_max": math.ceil((observed["jacobian_max_mean"] + z * observed["jacobian_max_sd"]) * 100)
            / 100}


def limits_toml(observed: dict[str, float], registration: RegistrationSettings, settings: ValidateSettings,
                n_atlases: int) -> str:
    """`qa_limits.toml`: the registration check's limits as preset keys, with where they come from."""
    z = chance_z(n_atlases)
    lines = [f"# Registration check limits from python -m preprocess.register.validate on {settings.atlas_bank}",
             f"# (preset {settings.preset}, {settings.spacing_mm:g} mm): the mean -/+ {z:.2f} SD of "
             f"{observed['registrations']} atlas-to-atlas registrations after the deformable stage, so that a scan",
             f"# mapped with {n_atlases} atlases as well as they map each other crosses each limit by chance in 1 "
             f"scan of {round(1 / CHANCE_FLAG_RATE)}.",
             f"# Held-out Dice {observed['held_out_dice']:.3f} +- {observed['held_out_dice_sd']:.3f} (worst "
             f"{observed['held_out_dice_min']:.3f}); Jacobian minimum {observed['jacobian_min_mean']:.3f} +- "
             f"{observed['jacobian_min_sd']:.3f} (lowest {observed['jacobian_min']:.3f}), maximum "
             f"{observed['jacobian_max_mean']:.3f} +- {observed['jacobian_max_sd']:.3f} (highest "
             f"{observed['jacobian_max']:.3f}).",
             "# Copy these keys into the registration preset that maps the scans",
             f"# (configs/registration/{settings.preset}.toml); a scan beyond them is flagged.",
             f"# Mean structure Dice: driving {observed['driving_dice']:.3f}, held out {observed['held_out_dice']:.3f}"
             f" ({', '.join(registration.qa_held_out_channels) or 'no group held out'})."]
    if not math.isfinite(observed["held_out_dice_min"]):
        lines.append("# The preset holds no structure group out (qa_held_out_channels): no held-out Dice limit.")
    lines += [f"{key} = {value!r}" for key, value in limit_values(observed, n_atlases).items()]
    return "\n".join(lines) + "\n"


def validate(settings: ValidateSettings, registration: RegistrationSettings) -> int:
    """The command's work: load the bank, run leave-one-atlas-out, write the tables, print the summary."""
    bank = load_atlas_bank(settings.atlas_bank, settings.spacing_mm, settings.crop_margin_mm)
    result = leave_one_atlas_out(bank, registration, settings)
    rows = write_tables(Path(settings.out), result, settings.preset)
    observed = observed_limits(result.final_qa)
    (Path(settings.out) / "qa_limits.toml").write_text(limits_toml(observed, registration, settings,
                                                                   len(bank.atlases)))
    mean = rows[-1]
    print(f"mean station Dice over {len(rows) - 1} stations: fused {mean['dice_fused']:.3f}, single atlas "
          f"{mean['dice_single']:.3f}, fused after the linear stage {mean['dice_fused_linear']:.3f}; mean surface "
          f"distance fused {mean['msd_fused_mm']:.2f} mm; tables in {settings.out}")
    print(f"structure Dice after the deformable stage: driving {observed['driving_dice']:.3f}, held out "
          f"{observed['held_out_dice']:.3f} (worst {observed['held_out_dice_min']:.3f}); Jacobian "
          f"{observed['jacobian_min']:.2f} to {observed['jacobian_max']:.2f}; limits in "
          f"{Path(settings.out) / 'qa_limits.toml'}")
    return 0


COMMAND = Command("python -m preprocess.register.validate",
                  "Leave-one-atlas-out: map each atlas' stations from the others and score them against its own.",
                  (ValidateSettings, RegistrationSettings), validate, presets=registration_presets,
                  required=("atlas_bank", "out"), log_file=lambda s, r: Path(s.out) / "validate.log")

main = COMMAND.run  # tests call this; failures raise
cli = COMMAND.cli  # python -m: a failure is one `error:` line, exit 2 or 1

if __name__ == "__main__":
    sys.exit(cli())
