"""Tuning as a command: a small grid of registration settings scored by leave-one-atlas-out station Dice and time.

`python -m preprocess.register.tune --atlas-bank DIR --out DIR [--preset demo]` runs
`preprocess.register.validate.leave_one_atlas_out` once per candidate (the preset with one regulariser weight,
one scale of the iterations per level, one force and the CT channel off or on), writes `tune_scores.csv` and the
chosen preset (`<out>/<preset>.toml`, or `--write-preset FILE`, e.g. `configs/registration/demo.toml`) with every
candidate's score as comments. The choice: among the candidates whose atlas-to-atlas fields fold no deeper than
`--fold-limit` (station Dice does not see folding), the highest mean fused station Dice; candidates within
`--dice-tolerance` of it go to the fastest: by the process's CPU seconds on the CPU (wall seconds there follow
whatever else the machine runs), by wall seconds on a GPU.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cache.cli import Command, toml_value
from cache.devices import resolve_device
from preprocess.register.__main__ import registration_presets
from preprocess.register.atlas_bank import AtlasBank, AtlasBankError, load_atlas_bank
from preprocess.register.settings import RegistrationSettings
from preprocess.register.validate import (
    ValidateSettings,
    leave_one_atlas_out,
    limit_values,
    observed_limits,
    station_rows,
)


@dataclass(frozen=True)
class TuneSettings:
    """The grid searched around the preset, and where the chosen preset is written."""

    try_diffusive_alpha_vox2: tuple[float, ...] = field(
        default=(0.25, 0.5, 1.0), metadata={"nargs": "+", "help": "regulariser weights tried (larger = smoother)"}
    )
    try_iteration_scale: tuple[float, ...] = field(
        default=(0.5, 1.0), metadata={"nargs": "+", "help": "factors on the preset's deformable iterations per level"}
    )
    try_force: tuple[str, ...] = field(default=("demons",), metadata={"nargs": "+", "help": "force terms tried"})
    try_ct_channel: Literal["off", "on", "both"] = field(
        default="both", metadata={"help": "CT channel settings tried"}
    )
    max_atlases: int = field(default=0, metadata={"help": "use the bank's first N atlases only (0: all; at least 3)"})
    dice_tolerance: float = field(
        default=0.002, metadata={"help": "candidates this close to the best Dice count as equal; the fastest wins"}
    )
    fold_limit: float = field(
        default=-0.05,
        metadata={"help": "only candidates whose atlas-to-atlas registrations keep the Jacobian determinant above "
                          "this are chosen (none: the least folding one); station Dice does not see a field that "
                          "folds, and on the demo bank the field that scored best folded on 15 of 17 demo scans"},
    )
    write_preset: str = field(
        default="", metadata={"help": "preset file to write (default: <out>/<preset>.toml)"}
    )


@dataclass(frozen=True)
class Candidate:
    settings: RegistrationSettings
    changes: dict  # the grid's values for this candidate
    dice_fused: float
    dice_single: float
    dice_fused_linear: float
    seconds: float  # wall
    cpu_seconds: float = float("nan")  # this process's CPU time (all threads)
    jacobian_min: float = float("nan")  # the lowest Jacobian determinant of its atlas-to-atlas registrations


def candidates(base: RegistrationSettings, tune: TuneSettings) -> list[dict]:
    """The grid as settings changes over `base`, one dict per candidate."""
    ct = {"off": (False,), "on": (True,), "both": (False, True)}[tune.try_ct_channel]
    grid = []
    for alpha, scale, force, use_ct in itertools.product(tune.try_diffusive_alpha_vox2, tune.try_iteration_scale,
                                                         tune.try_force, ct):
        iterations = tuple(max(1, round(n * scale)) for n in base.deformable_iterations)
        grid.append({"diffusive_alpha_vox2": alpha, "deformable_iterations": iterations, "force": force,
                     "use_ct_channel": use_ct})
    return grid


def score(bank: AtlasBank, base: RegistrationSettings, changes: dict, validate: ValidateSettings) -> Candidate:
    """One candidate's leave-one-atlas-out: mean station Dice (fused, single, linear), seconds; its settings carry
    the registration check's limits that this run reached."""
    settings = dataclasses.replace(base, **changes)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = leave_one_atlas_out(bank, settings, validate)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    mean, observed = station_rows(result.scores)[-1], observed_limits(result.final_qa)
    settings = dataclasses.replace(settings, **limit_values(observed, len(bank.atlases)))
    return Candidate(settings, changes, float(mean["dice_fused"]), float(mean["dice_single"]),
                     float(mean["dice_fused_linear"]), seconds, cpu_seconds, float(observed["jacobian_min"]))


def choose(scored: Sequence[Candidate], tolerance: float, by: Literal["seconds", "cpu_seconds"] = "seconds",
           fold_limit: float = -math.inf) -> Candidate:
    """The fastest (by the field `by`) of the candidates within `tolerance` of the best fused station Dice among
    those that fold no deeper than `fold_limit`; when every candidate folds deeper, the least folding one."""
    unfolded = [c for c in scored if not c.jacobian_min < fold_limit]  # NaN: not measured
    if not unfolded:
        return max(scored, key=lambda c: c.jacobian_min)
    best = max(c.dice_fused for c in unfolded)
    return min((c for c in unfolded if c.dice_fused >= best - tolerance), key=lambda c: getattr(c, by))


def _changes_text(changes: dict) -> str:
    return ", ".join(f"{k} {toml_value(v)}" for k, v in changes.items())


def preset_toml(chosen: Candidate, scored: Sequence[Candidate], validate: ValidateSettings, n_atlases: int,
                fold_limit: float) -> str:
    """The chosen settings as a preset (keys that differ from the defaults, the check's limits from its own run),
    the grid's scores as comments."""
    lines = [f"# Registration preset chosen by python -m preprocess.register.tune on {validate.atlas_bank}",
             f"# ({n_atlases} atlases, {validate.spacing_mm:g} mm, from preset {validate.preset}): mean fused station "
             "Dice leave-one-atlas-out, wall and CPU seconds for all of it, and the lowest Jacobian determinant of",
             f"# its registrations (chosen only at {fold_limit:g} or above, unless none is).",
             "# dice fused | single | linear | seconds | cpu seconds | jacobian min | candidate"]
    for c in sorted(scored, key=lambda c: -c.dice_fused):
        mark = "  <- chosen" if c is chosen else ""
        lines.append(f"# {c.dice_fused:.4f} | {c.dice_single:.4f} | {c.dice_fused_linear:.4f} | {c.seconds:7.1f} | "
                     f"{c.cpu_seconds:7.1f} | {c.jacobian_min:6.2f} | {_changes_text(c.changes)}{mark}")
    defaults = RegistrationSettings()
    for f in dataclasses.fields(RegistrationSettings):
        value = getattr(chosen.settings, f.name)
        if value != getattr(defaults, f.name):
            lines.append(f"{f.name} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def tune(validate: ValidateSettings, tune_settings: TuneSettings, base: RegistrationSettings) -> int:
    """The command's work: score every candidate, write the scores and the chosen preset."""
    bank = load_atlas_bank(validate.atlas_bank, validate.spacing_mm, validate.crop_margin_mm)
    if tune_settings.max_atlases:
        if tune_settings.max_atlases < 3:
            raise AtlasBankError(f"--max-atlases {tune_settings.max_atlases}: leave-one-atlas-out needs at least 3")
        bank = dataclasses.replace(bank, atlases=bank.atlases[:tune_settings.max_atlases])
    grid = candidates(base, tune_settings)
    scored = []
    for n, changes in enumerate(grid, start=1):
        print(f"candidate {n}/{len(grid)}: {_changes_text(changes)}")
        scored.append(score(bank, base, changes, validate))
        print(f"candidate {n}/{len(grid)}: fused station Dice {scored[-1].dice_fused:.4f}, "
              f"{scored[-1].seconds:.0f} s, {scored[-1].cpu_seconds:.0f} CPU s", flush=True)
    out = Path(validate.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tune_scores.csv", "w", newline="") as f:
        names = [x.name for x in dataclasses.fields(Candidate) if x.name not in ("settings", "changes")]
        writer = csv.DictWriter(f, fieldnames=[*grid[0], *names])
        writer.writeheader()
        writer.writerows({**{k: v if isinstance(v, str) else toml_value(v) for k, v in c.changes.items()},
                          **{k: getattr(c, k) for k in names}} for c in scored)
    on_cpu = resolve_device(validate.device).type == "cpu"
    chosen = choose(scored, tune_settings.dice_tolerance, "cpu_seconds" if on_cpu else "seconds",
                    tune_settings.fold_limit)
    if chosen.jacobian_min < tune_settings.fold_limit:
        print(f"every candidate folds below the fold limit {tune_settings.fold_limit:g}; chose the least folding one "
              f"(Jacobian minimum {chosen.jacobian_min:.2f}); try larger --try-diffusive-alpha-vox2 values")
    path = Path(tune_settings.write_preset or out / f"{validate.preset}.toml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(preset_toml(chosen, scored, validate, len(bank.atlases), tune_settings.fold_limit))
    print(f"chosen: {_changes_text(chosen.changes)} (fused station Dice {chosen.dice_fused:.4f}, "
          f"{chosen.seconds:.0f} s, {chosen.cpu_seconds:.0f} CPU s); preset written to {path}, "
          f"scores in {out / 'tune_scores.csv'}")
    return 0


COMMAND = Command("python -m preprocess.register.tune",
                  "Choose registration settings on a small grid by leave-one-atlas-out station Dice and time.",
                  (ValidateSettings, TuneSettings, RegistrationSettings), tune, presets=registration_presets,
                  required=("atlas_bank", "out"), log_file=lambda v, t, r: Path(v.out) / "tune.log")

main = COMMAND.run  # tests call this; failures raise
cli = COMMAND.cli  # python -m: a failure is one `error:` line, exit 2 or 1

if __name__ == "__main__":
    sys.exit(cli())
