"""Checkpoints: a dict of state_dicts and plain values, written atomically and read with weights_only=True.

Keys: model, optimizer, scheduler, scaler (state_dicts); epoch (last finished), best_metric, best_epoch,
epochs_since_best, stage, settings (TrainSettings as a plain dict), rng (torch, CUDA, numpy Generator, Python
and augmentation-generator states). "best.pt" and "last.pt" sit side by side in the run folder.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(FileNotFoundError):
    """A checkpoint that is missing or does not fit the run."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to a temporary file beside `path`, then rename it into place (a kill leaves the old file)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without unpickling code (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    return torch.load(path, map_location=map_location, weights_only=True)


def rng_states(data_rng: np.random.Generator, augment_generator: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs to draw what an uninterrupted run would."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": data_rng.bit_generator.state,
        "python": random.getstate(),
        "augment": augment_generator.get_state(),
    }


def restore_rng_states(states: dict[str, Any], data_rng: np.random.Generator,
                       augment_generator: torch.Generator) -> None:
    # RNG states are CPU byte tensors, whatever map_location moved the checkpoint to
    torch.set_rng_state(states["torch"].cpu())
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])
    data_rng.bit_generator.state = states["numpy"]
    random.setstate(states["python"])
    augment_generator.set_state(states["augment"].cpu())
