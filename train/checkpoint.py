"""Checkpoints: a dict of state_dicts and plain values, written atomically and read with weights_only=True.

Keys: model, optimizer, scheduler, scaler (state_dicts); epoch (last finished), best_metric, best_epoch,
epochs_since_best, stage, settings (TrainSettings as a plain dict), rng (torch, CUDA, numpy Generator, Python
and augmentation-generator states), and `checksum`: a BLAKE2b digest of everything else (tensors by dtype,
shape and bytes), verified on every load, so a damaged file is refused instead of resumed from.
"best.pt" and "last.pt" sit side by side in the run folder.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cache.atomic import atomic_path

CHECKSUM_KEY = "checksum"
REQUIRED_KEYS = ("model", "settings")


class CheckpointError(FileNotFoundError):
    """A checkpoint that is missing, damaged, or does not fit the run."""


def _update(hasher, value: Any) -> None:
    """Feed `value` to `hasher` in a canonical form: mapping keys sorted, tensors and arrays by dtype, shape and
    bytes, other values by type and repr."""
    if isinstance(value, Mapping):
        hasher.update(b"{")
        for key in sorted(value, key=repr):
            hasher.update(repr(key).encode() + b":")
            _update(hasher, value[key])
        hasher.update(b"}")
    elif isinstance(value, (list, tuple)):
        hasher.update(b"[" if isinstance(value, list) else b"(")
        for item in value:
            _update(hasher, item)
        hasher.update(b"]")
    elif isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"tensor{tensor.dtype}{tuple(tensor.shape)}".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(value, np.ndarray):
        hasher.update(f"array{value.dtype.str}{value.shape}".encode() + np.ascontiguousarray(value).tobytes())
    else:
        hasher.update(f"{type(value).__name__}:{value!r}".encode())


def state_digest(state: Mapping[str, Any]) -> str:
    """Hex BLAKE2b digest of a checkpoint's content, its `checksum` entry left out."""
    hasher = hashlib.blake2b(digest_size=16)
    _update(hasher, {k: v for k, v in state.items() if k != CHECKSUM_KEY})
    return hasher.hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` and its checksum to `path` through `cache.atomic.atomic_path` (a kill leaves the old file)."""
    with atomic_path(path) as temporary:
        torch.save({**state, CHECKSUM_KEY: state_digest(state)}, temporary)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without unpickling code (weights_only=True) and verify its checksum; a missing, empty,
    truncated, damaged or key-less file is a `CheckpointError` naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    fix = ("delete it and train again (or, for last.pt, resume from an intact copy); checkpoints are written "
           "atomically, so this is damage after writing")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch.load raises RuntimeError, EOFError, UnpicklingError, ... on damage
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(error).__name__}: "
                              f"{str(error).strip().splitlines()[0] if str(error).strip() else 'no detail'}); "
                              f"{fix}") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict; {fix}")
    missing = [key for key in (*REQUIRED_KEYS, CHECKSUM_KEY) if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)} (damaged, or not written by "
                              f"train.checkpoint); {fix}")
    if state[CHECKSUM_KEY] != state_digest(state):
        raise CheckpointError(f"checkpoint {path} does not match its checksum (content changed or damaged); {fix}")
    return state


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
