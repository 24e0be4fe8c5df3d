"""Atlas analyses when ground truth exists (the demo cohort): how well the fused station mask places the true
lymph nodes (per station and per IASLC zone, paper §4.1 and Fig. 8), and how much the station predictions
depend on which atlases were fused (every 3-of-5 subset, McNemar against all five).

A node is mapped to the fused station at its centre voxel; as the weight map (Eq. 1) is positive only inside
a station, this is the station of highest weight-map value. A centre outside every station is unmapped and
counts as wrong.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cache.grid import Grid
from cache.reader import open_scan
from cache.stations import station, station_names, stations
from evaluate.statistics import McNemarResult, mcnemar_exact


@dataclass(frozen=True)
class MappingAccuracy:
    """Correct and total nodes per true station and per true zone; overall fractions; unmapped count."""

    per_station: dict[str, tuple[int, int]]
    per_zone: dict[str, tuple[int, int]]
    station_accuracy: float
    zone_accuracy: float
    n_nodes: int
    n_unmapped: int


def mapped_codes(station_labels: np.ndarray, grid: Grid, centres_mm: np.ndarray) -> np.ndarray:
    """Fused station code (0: none) at each physical point (n, 3) in mm, (x, y, z); 0 outside the volume."""
    index = np.rint(grid.physical_to_index(np.asarray(centres_mm, dtype=np.float64).reshape(-1, 3))).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(station_labels.shape)), axis=1)
    codes = np.zeros(len(index), dtype=np.int64)
    z, y, x = index[inside].T
    codes[inside] = np.asarray(station_labels)[z, y, x]
    return codes


def mapping_accuracy(true_stations: Sequence[str], codes: np.ndarray) -> MappingAccuracy:
    """Station- and zone-level mapping accuracy of nodes with known true stations and mapped codes."""
    true_codes = np.array([station(name).code for name in true_stations], dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    zone_of = {s.code: s.zone for s in stations()}
    right_station = codes == true_codes
    right_zone = np.array([c > 0 and zone_of[c] == zone_of[t] for c, t in zip(codes, true_codes, strict=True)],
                          dtype=bool)
    per_station = {name: (int(right_station[true_codes == station(name).code].sum()),
                          int((true_codes == station(name).code).sum())) for name in station_names()}
    zones = Counter(zone_of[t] for t in true_codes)
    per_zone = {zone: (int(sum(right_zone[i] for i in range(len(codes)) if zone_of[true_codes[i]] == zone)), total)
                for zone, total in zones.items()}
    n = len(codes)
    return MappingAccuracy(
        per_station={k: v for k, v in per_station.items() if v[1]}, per_zone=per_zone,
        station_accuracy=float(right_station.mean()) if n else float("nan"),
        zone_accuracy=float(right_zone.mean()) if n else float("nan"),
        n_nodes=n, n_unmapped=int((codes == 0).sum()),
    )


def mapping_markdown(result: MappingAccuracy) -> str:
    """Tables of node-to-station and node-to-zone mapping accuracy."""
    lines = [f"{result.n_nodes} nodes; station accuracy {result.station_accuracy:.3f}, zone accuracy "
             f"{result.zone_accuracy:.3f}; {result.n_unmapped} node centre(s) outside every fused station.", "",
             "| Station | correct / nodes | accuracy |", "|---|---|---|"]
    lines += [f"| {name} | {c} / {t} | {c / t:.2f} |" for name, (c, t) in result.per_station.items()]
    lines += ["", "| Zone | correct / nodes | accuracy |", "|---|---|---|"]
    zone_order = list(dict.fromkeys(s.zone for s in stations()))
    lines += [f"| {zone} | {result.per_zone[zone][0]} / {result.per_zone[zone][1]} | "
              f"{result.per_zone[zone][0] / result.per_zone[zone][1]:.2f} |" for zone in zone_order
              if zone in result.per_zone]
    return "\n".join(lines)


NODE_COLUMNS = ("station", "x_mm", "y_mm", "z_mm")


def read_truth_nodes(path: Path) -> tuple[list[str], np.ndarray]:
    """True stations and physical centres (n, 3) in mm, (x, y, z), from a truth `nodes.csv`."""
    table = pd.read_csv(path, dtype={"station": str})
    missing = [c for c in NODE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: column(s) {', '.join(missing)} missing; a truth node table needs "
                         f"{', '.join(NODE_COLUMNS)}")
    return table["station"].tolist(), table[["x_mm", "y_mm", "z_mm"]].to_numpy(dtype=np.float64)


def cohort_mapping_accuracy(cache_paths: Sequence[Path], scan_ids: Sequence[str], truth_dir: Path
                            ) -> MappingAccuracy | None:
    """Mapping accuracy of every true node of the scans that have `truth_dir/<scan_id>/nodes.csv`; None if none."""
    true_stations: list[str] = []
    codes: list[np.ndarray] = []
    for path, scan_id in zip(cache_paths, scan_ids, strict=True):
        nodes = truth_dir / scan_id / "nodes.csv"
        if not nodes.is_file():
            continue
        names, centres = read_truth_nodes(nodes)
        with open_scan(path) as scan:
            codes.append(mapped_codes(np.asarray(scan.station_labels), scan.info.grid, centres))
        true_stations += names
    if not codes:
        return None
    return mapping_accuracy(true_stations, np.concatenate(codes))


def atlas_subsets(n_atlases: int, size: int) -> list[tuple[int, ...]]:
    """Every combination of `size` atlas indices out of `n_atlases` (10 for 3 of 5)."""
    if not 1 <= size < n_atlases:
        raise ValueError(f"atlas subsets of {size} out of {n_atlases} atlases: need 1 <= size < number of atlases")
    return list(itertools.combinations(range(n_atlases), size))


@dataclass(frozen=True)
class SubsetResult:
    """Station predictions with a subset of the atlases against those with all of them (same scans, stations)."""

    atlases: tuple[str, ...]
    accuracy: float
    accuracy_all: float
    mcnemar: McNemarResult
    n_stations: int


def compare_subsets(station_true: np.ndarray, pred_all: np.ndarray, pred_subsets: dict[tuple[str, ...], np.ndarray]
                    ) -> list[SubsetResult]:
    """Exact McNemar of each subset's station predictions against all atlases', on stations with known labels.

    Arrays are (scans, 17): truth (-1 unknown) and binary predictions.
    """
    known = station_true >= 0
    y_true = station_true[known]
    results = []
    for atlases, pred in pred_subsets.items():
        results.append(SubsetResult(
            atlases=atlases, accuracy=float(np.mean(pred[known] == y_true)),
            accuracy_all=float(np.mean(pred_all[known] == y_true)),
            mcnemar=mcnemar_exact(y_true, pred[known], pred_all[known]), n_stations=int(known.sum())))
    return results


def subsets_markdown(results: Sequence[SubsetResult], n_scans: int) -> str:
    """One row per atlas subset: its station accuracy, all atlases' accuracy, McNemar counts and p."""
    lines = [f"{n_scans} scan(s), {results[0].n_stations if results else 0} stations with known labels; McNemar: "
             "stations right only with the subset / only with all atlases.", "",
             "| Atlases | accuracy (subset) | accuracy (all) | only subset / only all | McNemar p |",
             "|---|---|---|---|---|"]
    lines += [f"| {', '.join(r.atlases)} | {r.accuracy:.3f} | {r.accuracy_all:.3f} | {r.mcnemar.only_a} / "
              f"{r.mcnemar.only_b} | {r.mcnemar.p_value:.3g} |" for r in results]
    significant = sum(r.mcnemar.p_value < 0.05 for r in results)
    lines += ["", f"{significant} of {len(results)} subsets differ significantly from all atlases (p < 0.05)."]
    return "\n".join(lines)
