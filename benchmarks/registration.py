"""Multi-atlas registration benchmark: station mapping on the phantom cohort, and our demons vs SimpleITK's.

Part 1 (phantom): every scan of a phantom cohort (generated when missing; `--root data/demo` reads the demo's and
writes nothing there) is registered to its 5-atlas bank with the `full` and `demo` presets; reported: the fraction
of truth node centres (nodes.csv) inside the fused station of the right name, the same for the linear stage alone,
mean structure Dice per stage, the mean station Dice against the phantom's own station labels, seconds per scan,
and the registration check (`preprocess.register.qa`) with the
preset's limits: driving and held-out structure Dice, Jacobian range, flag, and node accuracy of flagged scans
beside unflagged ones. `--rows-jsonl` appends each scan's row as it finishes. `--score-cache DIR` scores the station
labels and stored registration check of a cache folder already built instead, with no registration.

Part 2 (real CT): the CT of ../shared/data/ct/totalsegmentator/mediastinum_crop against a copy of itself warped by
a known smooth field (7 mm peak, seeded), CT channel only. Side by side on the same pair and the same number of
iterations at full resolution: our demons (diffusive, symmetric forces) and its diffeomorphic modes (velocity and
compositive update), SimpleITK's
FastSymmetricForcesDemonsRegistrationFilter and DiffeomorphicDemonsRegistrationFilter: seconds per iteration per
megavoxel, mean endpoint error inside the body, aorta Dice; plus SimpleITK's FastSymmetricForces with three times
the iterations and our multi-level run with its stop rules (at most 250 iterations, most of them at coarse levels).

    .venv/bin/python benchmarks/registration.py --json OUT.json [--root /tmp/lnstage-reg] [--scans 20] [--skip-scans 0]
        [--presets demo full] [--full-scans 20] [--device cpu] [--skip-phantom] [--skip-real-ct] [--rows-jsonl F]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from cache.settings import from_toml
from cache.stations import station_names
from preprocess.register import load_atlas_bank, map_stations, registration_settings
from preprocess.register.atlas_bank import read_cropped_scan
from preprocess.register.channels import windowed_ct
from preprocess.register.qa import dice_scores, qa_summary, registration_check
from preprocess.register.settings import RegistrationSettings
from preprocess.register.variational import register_deformable
from preprocess.register.warp import fixed_normaliser, warp_through
from preprocess.resample import grid_image, resample_like

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ holds the known fields
from tests.preprocess.register.known_field import smooth_random_field  # noqa: E402

REAL_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct" / "totalsegmentator" / "mediastinum_crop"


def _truth_nodes(grid, nodes_csv: Path, shape: tuple[int, ...]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The truth nodes' station names, their centres' (z, y, x) voxel indices and whether each is on the grid."""
    with open(nodes_csv, newline="") as f:
        nodes = list(csv.DictReader(f))
    points = np.array([[float(n["x_mm"]), float(n["y_mm"]), float(n["z_mm"])] for n in nodes]).reshape(-1, 3)
    index = np.rint(grid.physical_to_index(points)).astype(int).reshape(-1, 3)
    inside = np.all((index >= 0) & (index < np.asarray(shape)), axis=1)
    return [n["station"] for n in nodes], index, inside


def node_hits(labels: np.ndarray, grid, nodes_csv: Path) -> tuple[int, int]:
    """How many truth node centres fall in the fused station of their name, of how many nodes."""
    names = station_names()
    truth, index, inside = _truth_nodes(grid, nodes_csv, labels.shape)
    hits = 0
    for name, (z, y, x), ok in zip(truth, index, inside, strict=True):
        code = labels[z, y, x] if ok else 0
        hits += bool(code) and names[code - 1] == name
    return hits, len(truth)


def node_vote_share(votes: np.ndarray, n_atlases: int, grid, nodes_csv: Path) -> float:
    """Mean fraction of atlases that put each truth node centre in its own station (finer than the fused hit: a
    node still mapped right by the vote loses share when single atlases miss it); NaN without nodes."""
    codes = {name: n for n, name in enumerate(station_names())}
    truth, index, inside = _truth_nodes(grid, nodes_csv, votes.shape[1:])
    shares = [votes[codes[name], z, y, x] / n_atlases if ok else 0.0
              for name, (z, y, x), ok in zip(truth, index, inside, strict=True)]
    return float(np.mean(shares)) if shares else float("nan")


def truth_station_dice(labels: np.ndarray, grid, stations_path: Path) -> float:
    """Mean Dice over the 17 stations of fused `labels` (z, y, x on `grid`) against the phantom's own station
    labels (`truth/<scan>/stations.nii.gz`, resampled nearest): how well the whole map fits, beyond node hits."""
    truth = sitk.GetArrayFromImage(resample_like(sitk.ReadImage(str(stations_path)), grid_image(grid), "nearest", 0))
    dice = dice_scores(torch.from_numpy(truth.astype(np.int64).ravel()), torch.from_numpy(
        labels.astype(np.int64).ravel()), len(station_names()))
    return float(dice.mean())


def _accuracy(rows: list[dict]) -> float | None:
    """Fraction of the rows' truth nodes in the right station (None without nodes)."""
    nodes = sum(r["nodes"] for r in rows)
    return sum(r["hits"] for r in rows) / nodes if nodes else None


def _append_row(path: str, row: dict) -> None:
    """One scan's row as a JSON line, so a long run's finished scans survive its interruption."""
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def preset_settings(preset: str) -> RegistrationSettings:
    """A preset of configs/registration/ by name, or any preset file by its path (ending in .toml), e.g. one that
    `python -m preprocess.register.tune` wrote, so it is measured before it joins the shipped presets."""
    return from_toml(RegistrationSettings, preset) if preset.endswith(".toml") else registration_settings(preset)


def ensure_cohort(root: Path, scans: int, spacing_mm: float) -> None:
    if (root / "manifest.csv").is_file():
        return
    from preprocess.phantom.cohort import generate_cohort
    from preprocess.phantom.settings import PhantomSettings

    generate_cohort(PhantomSettings(out=str(root), patients=scans, atlases=5, seed=7, spacing_mm=spacing_mm))


def run_phantom(args: argparse.Namespace) -> dict:
    root = Path(args.root)
    ensure_cohort(root, args.scans, args.spacing_mm)
    bank = load_atlas_bank(root / "atlases", args.spacing_mm, args.crop_margin_mm)
    results = {}
    for preset in args.presets:
        scan_dirs = sorted((root / "scans").iterdir())[args.skip_scans:][: args.full_scans if preset == "full"
                                                                          else args.scans]
        settings = preset_settings(preset)
        linear_only = replace(settings, deformable_iterations=(0,) * len(settings.deformable_iterations), qa=False)
        rows = []
        for scan_dir in scan_dirs:
            scan = read_cropped_scan(scan_dir / "ct.nii.gz", scan_dir / "totalseg.nii.gz", args.spacing_mm,
                                     args.crop_margin_mm, "v2")
            start = time.perf_counter()
            station_map = map_stations(scan.ct_hu, scan.structures, scan.grid, bank, settings, args.device)
            seconds = time.perf_counter() - start
            nodes_csv = root / "truth" / scan_dir.name / "nodes.csv"
            hits, total = node_hits(station_map.labels, scan.grid, nodes_csv)
            vote_share = node_vote_share(station_map.votes, station_map.n_atlases, scan.grid, nodes_csv)
            station_dice = truth_station_dice(station_map.labels, scan.grid, nodes_csv.parent / "stations.nii.gz")
            linear_hits = None
            if preset in args.linear_only_presets:
                linear_map = map_stations(scan.ct_hu, scan.structures, scan.grid, bank, linear_only, args.device)
                linear_hits, _ = node_hits(linear_map.labels, scan.grid, nodes_csv)
            dice = qa_summary(station_map.qa)
            folding = max(r["folding_fraction"] for r in station_map.qa if r["stage"] == "deformable")
            check = registration_check(station_map.qa, settings.qa_held_out_dice_min, settings.qa_jacobian_min,
                                       settings.qa_jacobian_max)
            rows.append({"preset": preset, "scan": scan_dir.name, "shape_zyx": list(scan.grid.shape_zyx),
                         "seconds": seconds, "nodes": total, "hits": hits, "node_vote_share": vote_share,
                         "truth_station_dice": station_dice,
                         "linear_hits": linear_hits, "dice": dice,
                         "max_folding_fraction": folding, "check": check, "timings_s": station_map.timings_s})
            _append_row(args.rows_jsonl, rows[-1])
            print(f"{preset} {scan_dir.name}: {hits}/{total} nodes (vote share {vote_share:.3f}, linear "
                  f"{linear_hits}), station Dice against truth {station_dice:.3f}, structure Dice "
                  + ", ".join(f"{k} {v:.3f}" for k, v in dice.items())
                  + f", held out {check['held_out_dice']:.3f} (worst {check['held_out_dice_min']:.3f}), Jacobian "
                  f"{check['jacobian_min']:.2f} to {check['jacobian_max']:.2f}, flags '{check['flags']}', "
                  f"{seconds:.1f} s", flush=True)
        nodes = sum(r["nodes"] for r in rows)
        results[preset] = {
            "scans": len(rows),
            "nodes": nodes,
            "node_station_accuracy": sum(r["hits"] for r in rows) / max(nodes, 1),
            "node_station_accuracy_linear_only": (sum(r["linear_hits"] for r in rows) / max(nodes, 1)
                                                  if preset in args.linear_only_presets else None),
            "dice_mean": {stage: float(np.mean([r["dice"][stage] for r in rows])) for stage in rows[0]["dice"]},
            "seconds_per_scan_mean": float(np.mean([r["seconds"] for r in rows])),
            "seconds_per_scan_max": float(np.max([r["seconds"] for r in rows])),
            "max_folding_fraction": float(max(r["max_folding_fraction"] for r in rows)),
            "flagged_scans": sum(bool(r["check"]["flags"]) for r in rows),
            "node_station_accuracy_flagged": _accuracy([r for r in rows if r["check"]["flags"]]),
            "node_station_accuracy_unflagged": _accuracy([r for r in rows if not r["check"]["flags"]]),
            "node_vote_share_mean": float(np.nanmean([r["node_vote_share"] for r in rows])),
            "truth_station_dice_mean": float(np.mean([r["truth_station_dice"] for r in rows])),
            "per_scan": rows,
        }
    return results


def _stored_check(f, settings: RegistrationSettings) -> dict:
    """The file's `/qc/registration_check`, or for a file written before it existed, the check summed up again
    from its per-atlas deformable-stage records with the preset's limits (no group held out there)."""
    from cache import schema

    if schema.QC_REGISTRATION_CHECK_GROUP in f:
        attrs = f[schema.QC_REGISTRATION_CHECK_GROUP].attrs
        return {k: v.item() if hasattr(v, "item") else str(v) for k, v in attrs.items()}
    records = [{"stage": "deformable", "held_out_dice_mean": float("nan"),
                **{k: float(v) for k, v in atlas["deformable"].attrs.items()}}
               for atlas in f["qc/registration"].values()]
    return registration_check(records, settings.qa_held_out_dice_min, settings.qa_jacobian_min,
                              settings.qa_jacobian_max)


def score_cache(args: argparse.Namespace) -> dict:
    """Node-to-station accuracy and the stored registration check of a cache folder already built (e.g. the
    lead's `data/demo/cache/demo`), against the phantom truth under `--root`: no registration is run."""
    import h5py

    from cache import schema
    from cache.reader import cache_files, read_info

    rows = []
    for path in cache_files(args.score_cache)[args.skip_scans:][: args.scans]:
        info = read_info(path)
        preset = info.settings["BuildSettings"]["registration_preset"]
        with h5py.File(path, "r") as f:
            labels = f[schema.STATION_LABELS][...]
            check = _stored_check(f, registration_settings(preset))
        truth = Path(args.root) / "truth" / info.scan_id
        hits, total = node_hits(labels, info.grid, truth / "nodes.csv")
        rows.append({"preset": preset, "scan": info.scan_id, "nodes": total, "hits": hits, "check": check,
                     "truth_station_dice": truth_station_dice(labels, info.grid, truth / "stations.nii.gz")})
        _append_row(args.rows_jsonl, rows[-1])
    print(f"{args.score_cache}: {sum(r['hits'] for r in rows)}/{sum(r['nodes'] for r in rows)} nodes in the right "
          f"station over {len(rows)} scans", flush=True)
    return {"cache": args.score_cache, "scans": len(rows), "node_station_accuracy": _accuracy(rows),
            "per_scan": rows}


def _real_ct_pair(device: str):
    ct_image = sitk.ReadImage(str(REAL_CT / "ct_cropped.nii.gz"))
    ct = sitk.GetArrayFromImage(ct_image).astype(np.float32)
    aorta = sitk.GetArrayFromImage(sitk.ReadImage(str(REAL_CT / "aorta.nii.gz"))).astype(np.float32)
    spacing, shape = float(ct_image.GetSpacing()[0]), ct.shape
    images = torch.stack([windowed_ct(ct, -200, 400), torch.from_numpy(aorta),
                          torch.from_numpy((ct > -500).astype(np.float32))])[None].to(device)
    truth = smooth_random_field(shape, spacing, 7.0, 80.0, torch.Generator().manual_seed(11)).to(device)
    identity = fixed_normaliser(shape, spacing, device)[None]
    fixed = warp_through(images, identity, shape, shape, spacing, truth)
    return ct_image, images, fixed, truth, identity, spacing, shape


def _scores(field, images, fixed, truth, identity, spacing, shape) -> dict:
    registered = warp_through(images, identity, shape, shape, spacing, field)
    a, b = fixed[0, 1] > 0.5, registered[0, 1] > 0.5
    body = fixed[0, 2] > 0.5
    return {"endpoint_error_mm": float((field - truth).norm(dim=1)[0][body].mean()),
            "aorta_dice": 2 * float((a & b).sum()) / float(a.sum() + b.sum())}


def _sitk_field(ct_image, flt, fixed, moving, device) -> torch.Tensor:
    f = sitk.GetImageFromArray(fixed.cpu().numpy())
    m = sitk.GetImageFromArray(moving.cpu().numpy())
    f.CopyInformation(ct_image)
    m.CopyInformation(ct_image)
    displacement = sitk.GetArrayFromImage(flt.Execute(f, m))  # (z, y, x, 3) physical x, y, z
    direction = np.asarray(ct_image.GetDirection()).reshape(3, 3)
    along_axes = (displacement @ direction)[..., ::-1]  # components along the grid's z, y, x
    return torch.from_numpy(np.ascontiguousarray(along_axes)).permute(3, 0, 1, 2)[None].float().to(device)


def run_real_ct(args: argparse.Namespace) -> dict:
    ct_image, images, fixed, truth, identity, spacing, shape = _real_ct_pair(args.device)
    megavoxels = float(np.prod(shape)) / 1e6
    body = fixed[0, 2] > 0.5
    out = {"shape_zyx": list(shape), "spacing_mm": spacing, "peak_displacement_mm": float(truth.norm(dim=1).max()),
           "initial": {"endpoint_error_mm": float(truth.norm(dim=1)[0][body].mean())}, "iterations": args.iterations}
    one_level = RegistrationSettings(deformable_levels_mm=(0.0,), deformable_iterations=(args.iterations,),
                                     stop_no_new_minimum_iterations=0, stop_line_fit_iterations=0)
    weights = torch.ones(1, 1, device=args.device)
    runs = {
        "ours_demons": lambda: register_deformable(fixed[:, :1], images[:, :1], weights, identity, spacing,
                                                   one_level).field_mm,
        "ours_diffeomorphic": lambda: register_deformable(fixed[:, :1], images[:, :1], weights, identity, spacing,
                                                          replace(one_level, diffeomorphic=True)).field_mm,
        "ours_diffeomorphic_compositive": lambda: register_deformable(
            fixed[:, :1], images[:, :1], weights, identity, spacing,
            replace(one_level, diffeomorphic=True, diffeomorphic_update="compositive")).field_mm,
    }
    iteration_counts = {"sitk_fast_symmetric_forces_3x": 3 * args.iterations}
    for name, cls in (("sitk_fast_symmetric_forces", sitk.FastSymmetricForcesDemonsRegistrationFilter),
                      ("sitk_diffeomorphic", sitk.DiffeomorphicDemonsRegistrationFilter),
                      ("sitk_fast_symmetric_forces_3x", sitk.FastSymmetricForcesDemonsRegistrationFilter)):
        def run(cls=cls, name=name):
            iterations = iteration_counts.get(name, args.iterations)
            flt = cls()
            flt.SetNumberOfIterations(iterations)
            flt.SetStandardDeviations(1.5)
            return _sitk_field(ct_image, flt, fixed[0, 0], images[0, 0], args.device)
        runs[name] = run
    # our usual pyramid (coarse levels 4x and 2x the data spacing) with the stop rules; at most 250 iterations
    multi = RegistrationSettings(deformable_levels_mm=(4 * spacing, 2 * spacing, 0.0),
                                 deformable_iterations=(50, 50, 150), stop_line_fit_slope=1e-5)
    runs["ours_multilevel"] = lambda: register_deformable(fixed[:, :1], images[:, :1], weights, identity,
                                                                  spacing, multi).field_mm
    timings: dict[str, list[float]] = {name: [] for name in runs}
    fields = {}
    for _ in range(args.repeats):  # interleaved, so a change of machine load hits every method alike
        for name, run in runs.items():
            start = time.perf_counter()
            fields[name] = run()
            timings[name].append(time.perf_counter() - start)
    for name, field in fields.items():
        seconds = min(timings[name])
        iterations = iteration_counts.get(name, args.iterations)
        out[name] = {"seconds": seconds, "seconds_all_repeats": timings[name], "iterations": iterations,
                     "seconds_per_iteration_per_megavoxel": seconds / iterations / megavoxels,
                     **_scores(field, images, fixed, truth, identity, spacing, shape)}
        print(f"real CT {name}: {json.dumps(out[name])}", flush=True)
    out["ours_multilevel"].pop("seconds_per_iteration_per_megavoxel")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    parser.add_argument("--root", default="/tmp/lnstage-registration", help="phantom cohort (generated if missing)")
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--spacing-mm", type=float, default=2.0)
    parser.add_argument("--crop-margin-mm", type=float, default=20.0)
    parser.add_argument("--presets", nargs="+", default=["demo", "full"], help="preset names or .toml files")
    parser.add_argument("--full-scans", type=int, default=20, help="scans for the (slower) full preset")
    parser.add_argument("--skip-scans", type=int, default=0, help="start after this many scans (resume a run)")
    parser.add_argument("--linear-only-presets", nargs="*", default=["demo"],
                        help="presets whose linear stage alone is also scored (one more registration per scan)")
    parser.add_argument("--iterations", type=int, default=50, help="iterations of the side-by-side comparison")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats of the side-by-side runs (min kept)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--skip-phantom", action="store_true")
    parser.add_argument("--skip-real-ct", action="store_true")
    parser.add_argument("--score-cache", default="",
                        help="score a cache folder's station labels against --root's truth (no registration)")
    parser.add_argument("--rows-jsonl", default="", help="append each phantom scan's row to this file as it ends")
    args = parser.parse_args()
    result = {"device": args.device, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "load_average_start": os.getloadavg()}
    if args.score_cache:
        result["cache"] = score_cache(args)
    elif not args.skip_real_ct:
        result["real_ct"] = run_real_ct(args)
    if not args.skip_phantom and not args.score_cache:
        result["phantom"] = run_phantom(args)
    result["load_average_end"] = os.getloadavg()
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
