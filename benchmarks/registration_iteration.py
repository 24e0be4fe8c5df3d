"""CPU seconds of the parts of one finest-level deformable iteration, one atlas, on the CPU kernels.

Synthetic blocky labels of a crop's shape (default the 1 mm phantom's crop, 260x210x285) stand in for a scan and
an atlas; each part runs three times and its least CPU time (process time: all threads) is printed. This says
what one iteration costs per atlas and voxel, the floor of registration's time (`benchmarks/README.md`,
"Registration memory"), without a phantom or the load of a whole run.

    .venv/bin/python benchmarks/registration_iteration.py [--shape 260 210 285] [--channels 9]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from preprocess.register import registration_settings
from preprocess.register.channels import LabelChannels, level_channels_last
from preprocess.register.regulariser import diffusive_denominator, diffusive_solve
from preprocess.register.variational import demons_force_channels_last
from preprocess.register.warp import index_to_normalised, warp_channels_last


def cpu_seconds(function, repeats: int = 3) -> tuple[float, object]:
    """Least process CPU time of `repeats` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        result = function()
        best = min(best, time.process_time() - start)
    return best, result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", nargs=3, type=int, default=[260, 210, 285], help="crop z y x, voxels at 1 mm")
    parser.add_argument("--channels", type=int, default=9, help="structure channels of the deformable stage")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    z, y, x = np.indices(shape, dtype=np.int32)
    labels = ((z // 23 + y // 17 + x // 19) % (args.channels + 1)).astype(np.uint8)
    codes = tuple(range(1, args.channels + 1))
    fixed = LabelChannels(torch.from_numpy(labels)[None], codes)
    moving = LabelChannels(torch.from_numpy(np.roll(labels, 3, axis=2).copy())[None], codes)
    matrix = torch.as_tensor(index_to_normalised(shape), dtype=torch.float32)[None]
    field = 0.7 * torch.ones(1, 3, *shape)
    parts = {}
    parts["one-hot channels (per level)"], fixed_cl = cpu_seconds(lambda: level_channels_last(fixed, shape))
    moving_channels, moving_labels = level_channels_last(moving, shape), level_channels_last(moving, shape, True)
    parts["warp of float32 channels"], warped = cpu_seconds(
        lambda: warp_channels_last(moving_channels, matrix, shape, shape, 1.0, field))
    parts["warp of one-hot labels"], _ = cpu_seconds(
        lambda: warp_channels_last(moving_labels, matrix, shape, shape, 1.0, field))
    weights = torch.ones(1, args.channels)
    settings = registration_settings("full")
    parts["demons force"], (force, _) = cpu_seconds(
        lambda: demons_force_channels_last(fixed_cl, warped, weights, (1.0, 1.0, 1.0), settings))
    denominator = diffusive_denominator(shape, (1.0, 1.0, 1.0), 0.5, "cpu")
    parts["regulariser (2 DCTs)"], _ = cpu_seconds(
        lambda: diffusive_solve(force.clone(), denominator, overwrite_rhs=True))
    print(f"{np.prod(shape) / 1e6:.2f} Mvox, {args.channels} channels, {torch.get_num_threads()} threads; CPU s per "
          "atlas and iteration: " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    return parts


if __name__ == "__main__":
    main()
