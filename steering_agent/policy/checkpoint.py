"""Checkpoints: weights plus the model and preprocessing configs and their provenance.

A checkpoint is a plain dict of tensors and primitive types written with `torch.save`
and read back with `torch.load(..., weights_only=True)`, so opening one can never run
code: a file that would (a pickle of code or classes) is refused, not loaded. Anything
wrong with a file raises `CheckpointError`, one line naming the file and the fix.
"""

from __future__ import annotations

import datetime as _dt
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.preprocess import PreprocessConfig

FORMAT = "steering_agent.checkpoint"  # the file format's name (not the module path)
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or does not match the model."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds.

    Attributes:
        path: the file it came from.
        model_config / preprocess_config: the settings the weights were trained with.
        state_dict: the weights.
        provenance: data, command, metrics, date, torch version (primitive types).
        training_state: optimizer/epoch state of a resumable file ({} when shipped).
    """

    path: Path
    model_config: ModelConfig
    preprocess_config: PreprocessConfig
    state_dict: dict[str, torch.Tensor]
    provenance: dict[str, Any] = field(default_factory=dict)
    training_state: dict[str, Any] = field(default_factory=dict)

    def build_model(self, device: torch.device | str = "cpu") -> SteeringNet:
        """A `SteeringNet` in eval mode with these weights."""
        model = SteeringNet(self.model_config)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as e:
            raise CheckpointError(
                f"checkpoint {self.path}: weights do not match its model config "
                f"{self.model_config}: {e}"
            ) from None
        return model.to(device).eval()


def save_checkpoint(
    path: str | os.PathLike,
    model: SteeringNet,
    model_cfg: ModelConfig,
    preprocess_cfg: PreprocessConfig,
    provenance: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write weights (float32, CPU) and configs atomically to `path`.

    `provenance` gets `date` and `torch_version` added when missing.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; pass a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    prov = dict(provenance or {})
    prov.setdefault("date", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    prov.setdefault("torch_version", str(torch.__version__))
    prov = _plain(prov)
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model_cfg.to_dict(),
        "preprocess_config": preprocess_cfg.to_dict(),
        "state_dict": state,
        "provenance": prov,
        "training_state": training_state or {},
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves no temporary file behind
        raise
    return path


def _plain(obj: Any) -> Any:
    """Provenance as primitive types only, so `weights_only` loading accepts it."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return type(obj)(obj) if obj is not None else None
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    return str(obj)  # paths, versions and the like


_FIX = "use a file written by `steering-agent train` (or checkpoint.save_checkpoint)"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's file format is a zip archive


def _first_sentence(text: str) -> str:
    """The first whole sentence of a message, on one line."""
    flat = " ".join(text.split())
    end = flat.find(". ")
    return flat if end < 0 else flat[: end + 1]


def _refusal(path: Path, err: Exception) -> str:
    """Why `torch.load(weights_only=True)` refused or failed on `path`, and the fix."""
    text = str(err)
    with open(path, "rb") as f:
        magic = f.read(len(_ZIP_MAGIC))
    if not magic:
        return f"checkpoint {path} is empty (0 bytes); {_FIX}"
    if magic != _ZIP_MAGIC:
        return (
            f"checkpoint {path} is not in the format torch.save writes (a bare pickle, which "
            f"could run code when loaded, or another kind of file), so it was not loaded; {_FIX}"
        )
    if isinstance(err, pickle.UnpicklingError):
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            return (
                f"checkpoint {path} would import and run {found.group(1)} when loaded, which "
                f"a plain-data checkpoint (tensors, numbers, strings) never does, so it was "
                f"not loaded; {_FIX}"
            )
        return (
            f"checkpoint {path} is not a plain-data checkpoint (its pickle asks for more "
            f"than tensors, numbers and strings), so it was not loaded; {_FIX}"
        )
    return (
        f"checkpoint {path} is damaged, e.g. cut short or changed after it was written "
        f"({type(err).__name__}: {_first_sentence(text)}); {_FIX}"
    )


def _read(path: Path) -> dict:
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pt"))
        hint = f" (it holds {', '.join(inside[:3])})" if inside else ""
        raise CheckpointError(
            f"checkpoint {path} is a directory, not a checkpoint file{hint}; pass the .pt file"
        )
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass a file written by `steering-agent train` "
            "(shipped: checkpoints/cnn_lstm.pt, checkpoints/cnn.pt)"
        )
    try:
        with warnings.catch_warnings():
            # "Detected pickle protocol N": about files the loader refuses anyway
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise CheckpointError(f"checkpoint {path} cannot be read ({e.strerror or e})") from None
    except Exception as e:  # a truncated zip, a foreign or code-running pickle...
        raise CheckpointError(_refusal(path, e)) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not a steering_agent checkpoint (no format "
            f"{FORMAT!r} in it); {_FIX}"
        )
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}, this code reads "
            f"{FORMAT_VERSION}; retrain or convert it"
        )
    return payload


def load_checkpoint(path: str | os.PathLike, option: str | None = None) -> Checkpoint:
    """Read and validate a checkpoint (weights_only: never runs code from the file).

    Args:
        option: the command-line option that named the file (e.g. "--policy"), put in
            front of any error message.

    Raises:
        CheckpointError: missing, a directory, truncated, unsafe, wrong version, or
            weights that do not fit the stored model config (names and shapes checked).
    """
    if option is None:
        return _load(Path(path))
    try:
        return _load(Path(path))
    except CheckpointError as e:
        raise CheckpointError(f"{option}: {e}") from None


def _load(path: Path) -> Checkpoint:
    payload = _read(path)
    try:
        ckpt = Checkpoint(
            path=path,
            model_config=ModelConfig.from_dict(payload["model_config"]),
            preprocess_config=PreprocessConfig.from_dict(payload["preprocess_config"]),
            state_dict=dict(payload["state_dict"]),
            provenance=dict(payload.get("provenance", {})),
            training_state=dict(payload.get("training_state", {})),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: bad or missing field ({e}); {_FIX}") from None
    _check_shapes(ckpt)
    return ckpt


def _check_shapes(ckpt: Checkpoint) -> None:
    expected = {k: v.shape for k, v in SteeringNet(ckpt.model_config).state_dict().items()}
    got = {k: getattr(v, "shape", None) for k, v in ckpt.state_dict.items()}
    missing = sorted(expected.keys() - got.keys())
    extra = sorted(got.keys() - expected.keys())
    wrong = [
        f"{k}: {tuple(got[k])} != {tuple(s)}"
        for k, s in expected.items()
        if k in got and got[k] != s
    ]
    if missing or extra or wrong:
        raise CheckpointError(
            f"checkpoint {ckpt.path} does not match its model config ({ckpt.model_config.arch}): "
            f"missing {missing[:5]}, unexpected {extra[:5]}, wrong shapes {wrong[:5]}; {_FIX}"
        )
