"""Checkpoints: plain dicts of tensors and primitives, loadable with ``weights_only=True``.

Every checkpoint carries the effective config, so a model is always rebuilt from the settings
it was trained with, never from whatever the current defaults are.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from atft_core.run_files import write_bytes_atomic


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Serialise in memory, then write atomically (temp file + rename): a crash or a full disk
    never leaves half a checkpoint, and the previous one stays intact. torch's own file writer
    reports a full disk as "unexpected pos 704 vs 598"; Python's write says ENOSPC and the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getbuffer())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (no arbitrary unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location=map_location, weights_only=True)
