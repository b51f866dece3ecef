"""Checkpoints: weights plus the model and preprocessing configs and their provenance.

A checkpoint is a plain dict of tensors and primitive types written with `torch.save`
and read back with `torch.load(..., weights_only=True)`, so opening one can never run
code. Anything wrong with a file raises `CheckpointError` naming the file and the fix.
"""

from __future__ import annotations

import datetime as _dt
import os
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
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a truncated checkpoint
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


def _read(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass a file written by `steering-agent train` "
            "(shipped: checkpoints/cnn_lstm.pt, checkpoints/cnn.pt)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, code-running pickle...
        text = str(e)
        kind = "unsafe or not a plain-data checkpoint" if "eights" in text else "unreadable"
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        msg = next((ln for ln in lines if "Unsupported" in ln), lines[0] if lines else "")[:200]
        raise CheckpointError(
            f"checkpoint {path} is {kind} ({type(e).__name__}: {msg}); "
            "re-export it with steering_agent.policy.checkpoint.save_checkpoint"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a steering_agent checkpoint")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}, this code reads "
            f"{FORMAT_VERSION}; retrain or convert it"
        )
    return payload


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint (weights_only: never runs code from the file).

    Raises:
        CheckpointError: missing, truncated, unsafe, wrong version, or weights that do
            not fit the stored model config (names and shapes checked here).
    """
    path = Path(path)
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
        raise CheckpointError(f"checkpoint {path}: bad or missing field ({e})") from None
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
            f"missing {missing[:5]}, unexpected {extra[:5]}, wrong shapes {wrong[:5]}"
        )
