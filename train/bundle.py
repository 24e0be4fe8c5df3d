"""Model bundles: a trained run packed for another site (`lnstage-export-model RUN OUT.zip`), and read back.

OUT.zip holds `fold<K>/best.pt` (the model's weights and the run's settings only, no optimizer state; checksummed
like every checkpoint), `fold<K>/config.json` when the run has it, `dataset.toml` (the model's dataset config:
its preprocessing settings and rule set) and `bundle.json`:
{"format": 1, "stage", "dataset", "folds", "preprocessing": {class: {field: value}}, "preprocessing_hash",
"stations", "rule_set", "atlas_bank_digest", "package_version"}.
`python -m evaluate predict --model OUT.zip` unpacks it beside its outputs and refuses to stage scans prepared
with other preprocessing settings or another atlas bank than the model was trained on, naming the difference.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cache.atomic import atomic_path

BUNDLE_FORMAT = 1


class BundleError(ValueError):
    """A bundle that is damaged or does not fit the inputs; the message names the difference and the fix."""


@dataclass(frozen=True)
class ExportSettings:
    """Which trained run to pack, and into which zip file."""

    run: str = field(default="", metadata={"args": ["run"], "help": "run folder holding fold<K>/best.pt"})
    out: str = field(default="", metadata={"args": ["out"], "help": "the zip file to write (e.g. model.zip)"})


@dataclass(frozen=True)
class Bundle:
    """An unpacked bundle: `folder` holds fold<K>/best.pt and dataset.toml; `info` is bundle.json."""

    folder: Path
    info: dict

    @property
    def dataset_config(self) -> Path:
        return self.folder / "dataset.toml"

    def check_inputs(self, preprocessing: dict, atlas_bank_digest: str, where: str) -> None:
        """Refuse inputs prepared with other preprocessing settings or another atlas bank, naming each
        difference (`preprocessing`: cache.build_settings.expected_settings of the settings in use)."""
        from cache.build_settings import settings_differences

        lines = [line.replace(": file ", ": bundle ") for line in settings_differences(self.info["preprocessing"],
                                                                                       preprocessing)]
        if atlas_bank_digest != self.info["atlas_bank_digest"]:
            lines.append(f"atlas bank digest: bundle {self.info['atlas_bank_digest'][:12]}..., current "
                         f"{atlas_bank_digest[:12]}...")
        if lines:
            raise BundleError(f"{where} does not fit model bundle {self.folder}: {'; '.join(lines)}; use the "
                              "preprocessing settings and atlas bank the model was trained with (the bundle's "
                              "dataset.toml; leave out --dataset)")


def export_bundle(run: Path, out: Path) -> Path:
    """Pack every fold of `run` with its preprocessing description into the zip file `out`."""
    from cache.build_settings import build_settings_for, expected_settings
    from cache.checksums import file_digest
    from cache.dataset import config_file, load_dataset
    from cache.settings import settings_hash
    from cache.stations import station_names
    from cache.writer import package_version
    from train.checkpoint import load_checkpoint, save_checkpoint
    from train.predict import fold_dirs

    folds = fold_dirs(run, "")
    states = [load_checkpoint(fold / "best.pt") for fold in folds]
    datasets = {state["settings"]["dataset"] for state in states}
    if len(datasets) != 1:
        raise BundleError(f"{run}: its folds were trained on different datasets ({sorted(datasets)}); one bundle "
                          "holds one model")
    dataset = datasets.pop()
    config, build = load_dataset(dataset), build_settings_for(dataset)
    if not config.atlas_bank_path.is_dir():
        raise BundleError(f"{run}: the atlas bank {config.atlas_bank_path} of dataset {dataset!r} is missing; the "
                          "bundle records its digest so that predict uses the same bank")
    info = {"format": BUNDLE_FORMAT, "stage": states[0]["settings"]["stage"], "dataset": config.name,
            "folds": [fold.name for fold in folds], "preprocessing": expected_settings(build),
            "preprocessing_hash": settings_hash(build), "stations": list(station_names()),
            "rule_set": config.rule_set, "atlas_bank_digest": file_digest(config.atlas_bank_path),
            "package_version": package_version()}
    staging = out.with_name(f".{out.name}.parts")
    shutil.rmtree(staging, ignore_errors=True)
    for fold, state in zip(folds, states, strict=True):
        (staging / fold.name).mkdir(parents=True)
        save_checkpoint(staging / fold.name / "best.pt", {k: state[k] for k in ("model", "settings", "stage")
                                                          if k in state})
        if (fold / "config.json").is_file():
            shutil.copy(fold / "config.json", staging / fold.name / "config.json")
    shutil.copy(config_file(dataset), staging / "dataset.toml")
    (staging / "bundle.json").write_text(json.dumps(info, indent=1))
    with atomic_path(out) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(staging).as_posix())
    shutil.rmtree(staging)
    return out


def unpack_bundle(path: Path, into: Path) -> Bundle:
    """Unpack the bundle `path` into the folder `into` (replacing an earlier unpacking) and read bundle.json."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "bundle.json" not in names or any(n.startswith(("/", "..")) or "/../" in n for n in names):
                raise BundleError(f"{path}: not a model bundle (no bundle.json, or unsafe paths); make one with "
                                  "lnstage-export-model RUN OUT.zip")
            shutil.rmtree(into, ignore_errors=True)
            archive.extractall(into)
    except zipfile.BadZipFile as error:
        raise BundleError(f"{path}: not a readable zip file ({error}); copy the bundle again") from error
    info = json.loads((into / "bundle.json").read_text())
    if info.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: bundle format {info.get('format')!r}, this version reads {BUNDLE_FORMAT}")
    return Bundle(into, info)


def run_export(settings: ExportSettings) -> int:
    if not settings.run or not settings.out:
        raise BundleError("give the run folder and the zip file: lnstage-export-model RUN OUT.zip")
    out = export_bundle(Path(settings.run), Path(settings.out))
    info = json.loads(zipfile.ZipFile(out).read("bundle.json"))
    print(f"{out}: {len(info['folds'])} fold(s) of {info['stage']} on {info['dataset']}, preprocessing "
          f"{info['preprocessing_hash'][:12]}, rule set {info['rule_set']}")
    return 0
