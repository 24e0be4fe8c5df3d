"""What reading inputs and caches safely costs: checksum-verified cache opens and complete NIfTI reads.

Side by side in one run, warm page cache, one process:
  cache: `read_info` without and with verification (every dataset and attribute set hashed) of synthetic scans of
    160x200x200 voxels (the sampling benchmark's size), against reading the file's bytes plus hashing them in
    memory (the physical limit of a verified read);
  NIfTI: `preprocess.images.check_nifti` (decompress to the end, count bytes, scan float voxels) against
    SimpleITK's own read of the same file, for the real CT of ../shared/data and a float32 PET-sized volume.

`.venv/bin/python benchmarks/verified_reads.py [--scans 4] [--json OUT.json]`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import SimpleITK as sitk

from cache.checksums import content_problems
from cache.reader import read_info
from cache.writer import write_scan
from preprocess.images import check_nifti

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ holds the synthetic scans
from tests.preprocess.synthetic_scan import synthetic_record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_CT = REPO.parent / "shared" / "data" / "ct" / "totalsegmentator" / "mediastinum_crop" / "ct_cropped.nii.gz"


def best_of(runs: int, work) -> float:
    """Shortest wall time of `runs` calls of `work` (the least disturbed by other jobs on a shared machine)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def cache_reads(folder: Path, n_scans: int) -> dict:
    paths = [write_scan(folder / f"p{i}__s0.h5", synthetic_record(f"p{i}", "s0", np.random.default_rng(i)))
             for i in range(n_scans)]
    megabytes = sum(p.stat().st_size for p in paths) / 1e6

    def verified() -> None:  # what read_info(verify=True) does the first time a process opens a file
        for p in paths:
            read_info(p, verify=False)
            with h5py.File(p, "r", locking=False) as f:
                assert not content_problems(f, p)

    raw = best_of(3, lambda: [p.read_bytes() for p in paths])
    contents = [p.read_bytes() for p in paths]
    hash_only = best_of(3, lambda: [hashlib.blake2b(c, digest_size=16).digest() for c in contents])
    plain = best_of(3, lambda: [read_info(p, verify=False) for p in paths])
    hashed = best_of(3, verified)
    return {"scans": n_scans, "mb": round(megabytes, 1), "read_bytes_s": raw, "blake2b_in_memory_s": hash_only,
            "read_info_s": plain,
            "read_info_verified_s": hashed, "verified_mb_per_s": megabytes / hashed,
            "verified_over_read_bytes": hashed / raw, "verified_over_read_plus_hash": hashed / (raw + hash_only)}


def nifti_reads(folder: Path) -> list[dict]:
    pet = folder / "pet.nii.gz"
    rng = np.random.default_rng(0)
    sitk.WriteImage(sitk.GetImageFromArray(rng.gamma(2.0, 0.5, (300, 200, 200)).astype(np.float32)), str(pet))
    rows = []
    for path in (REAL_CT, pet):
        check = best_of(3, lambda p=path: check_nifti(p))
        itk = best_of(3, lambda p=path: sitk.ReadImage(str(p)))
        rows.append({"file": path.name, "mb_on_disk": round(path.stat().st_size / 1e6, 1), "check_nifti_s": check,
                     "sitk_read_s": itk, "check_over_read": check / itk})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="verified_reads_") as work:
        result = {"cache": cache_reads(Path(work), args.scans), "nifti": nifti_reads(Path(work)),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
