"""Training: fit a CNN+LSTM (or the CNN baseline) to recorded expert drives (the command
is `steering-agent train`, steering_agent.train).

Frames are preprocessed once up front into uint8. Each batch row walks one episode
chunk after chunk (truncated backpropagation through time): the LSTM state is carried,
detached, from one chunk to the next and zeroed when the row starts a new episode.
Validation RMSE is measured on held-out episodes (episode-level split) every epoch,
each run from its first frame with the state carried, as the policy runs it.

Augmentation keeps labels honest: brightness/contrast/noise change no label; a
horizontal image shift of `dx` pixels (constant over a chunk) looks like the camera
yawed by `dx * fov / width` and adds `shift_steer_per_px * dx` to the label (a shift
to the right = the car points left of where it did = steer more to the right, +).

Under `torchrun --nproc_per_node N` (RANK and WORLD_SIZE set; gloo on CPU, NCCL on
CUDA, one GPU per rank: cuda:LOCAL_RANK) training is data-parallel: every rank walks the
same global chunk stream (same seed), and rank r owns the contiguous block r of the
`--batch` rows, so the rows (and the episodes they walk) are sharded deterministically;
each rank carries the truncated-BPTT state of its own rows. The model is wrapped in
DistributedDataParallel (gradients averaged), so N ranks of batch/N rows make the
updates one process of `--batch` rows makes. Checkpoints are written by rank 0 only;
`--resume` reads `<out>.last.pt` on every rank (a shared or copied path). docs/scale.md.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steering_agent.common.cli_args import UsageError
from steering_agent.common.extras import require
from steering_agent.data.augment import CameraFaults, augment
from steering_agent.data.sequences import ChunkStream, PreparedEpisode, prepare, split_episodes
from steering_agent.policy.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.preprocess import PreprocessConfig
from steering_agent.policy.threads import set_torch_threads
from steering_agent.training_loop import (
    PRECISIONS,
    Dist,
    dist_from_env,
    evaluate_rmse,
    fast_training_model,
    keep_freed_memory,
    reset_rows,
    resolve_precision,
    steering_loss,
    train_epoch,
    warmup_cosine,
)

__all__ = [
    "PRECISIONS", "CameraFaults", "ChunkStream", "Dist", "PreparedEpisode", "TrainConfig",
    "augment", "evaluate_rmse", "split_episodes", "steering_loss", "train", "train_epoch",
]  # fmt: skip
_reset_rows, _warmup_cosine = reset_rows, warmup_cosine  # the names they had here


@dataclass
class TrainConfig:
    """Training settings (all recorded in the checkpoint's provenance)."""

    arch: str = "cnn_lstm"
    epochs: int = 10
    seq_len: int = 16
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.15
    seed: int = 0
    device: str = "cpu"
    brightness: float = 0.25
    contrast: float = 0.25
    noise_std: float = 4.0
    max_shift_px: int = 4
    # 90 deg FOV over 200 px: 1 px = 0.00785 rad of yaw; the expert answers a heading
    # error one-for-one in wheel angle, and full steer is 70 deg (1.222 rad) of wheel.
    shift_steer_per_px: float = 0.0064
    # weight of the frame-to-frame loss: the squared error of each prediction's change
    # from the previous frame against the label's change (0: off). It teaches the network
    # to follow the expert's steering changes, not the frame-to-frame noise of the image.
    delta_weight: float = 0.0
    # camera faults (black, frozen, dim, glare spans) started per second per row, labels
    # kept (steering_agent.data.augment.CameraFaults; 0: off)
    camera_faults_per_s: float = 0.0
    frame_dt_s: float = 0.05
    # "fp32" (default); "bf16": autocast of the encoder; "auto": bf16 on a CPU with
    # native bf16, else fp32 (steering_agent.training_loop.resolve_precision; the run
    # records the resolved one). fp32 is the default: on the 2-thread bench under load,
    # bf16 was slower (docs/performance.md), and results then do not depend on the CPU
    precision: str = "fp32"
    # torch.compile the network (measured: ~1 min to compile here, no faster after it;
    # docs/performance.md)
    compile: bool = False
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


def train(
    episodes: list,
    cfg: TrainConfig,
    out: str | os.PathLike,
    logdir: str | os.PathLike | None = None,
    resume: bool = False,
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
    init: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train on `episodes` (Episode-likes, list or generator); save the best-val model to `out`.

    A resumable file with optimizer state is kept beside it as `<out>.last.pt`. `init`
    names a checkpoint whose weights training starts from (fine-tuning, e.g. on CARLA
    drives); its architecture and preprocessing must be `cfg`'s (see `init_checkpoint`).

    Without a validation episode (one episode, or `val_fraction` 0) no validation RMSE
    is measured: `val_rmse` is None in the history, `best_val_rmse` None, and `out`
    holds the last epoch's weights (its provenance says so under `validation`).

    Returns:
        dict(history=[{epoch, train_loss, val_rmse}], best_val_rmse, validation (the
        number of validation episodes), train_episodes, out, seconds).
    """
    if logdir:  # TensorBoard only where asked for (the `tensorboard` extra), before any work
        require("tensorboard", "--logdir (TensorBoard logging)")
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, cfg.device))
    dist = dist_from_env(cfg)
    if dist.world > 1 and str(cfg.device).startswith("cuda"):
        cfg = replace(cfg, device=f"cuda:{dist.local_rank}")  # one GPU per rank
    try:
        return _train(episodes, cfg, out, logdir, resume, provenance, progress, init, dist)
    finally:
        if dist.owns_group:
            import torch.distributed as tdist

            tdist.destroy_process_group()


def _train(episodes, cfg, out, logdir, resume, provenance, progress, init, dist: Dist) -> dict:
    from tqdm import tqdm

    if logdir and dist.main:
        from torch.utils.tensorboard import SummaryWriter

    progress = progress and dist.main
    torch.manual_seed(cfg.seed)  # the same on every rank: one global stream, one init
    rng = np.random.default_rng(cfg.seed)
    set_torch_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    keep_freed_memory()
    t_start = time.monotonic()
    prepared = prepare(episodes, cfg.preprocess)
    if not prepared:
        raise UsageError("no training data: every episode has fewer than 2 frames")
    train_eps, val_eps = split_episodes(prepared, cfg.val_fraction, cfg.seed)
    if not val_eps and dist.main:
        print(
            f"warning: no validation episode ({len(prepared)} usable episode(s), val "
            f"fraction {cfg.val_fraction:g}): no val rmse is measured and the checkpoint "
            "holds the last epoch; record 2 or more episodes to validate",
            file=sys.stderr,
        )
    stream = ChunkStream(train_eps, cfg.batch, cfg.seq_len, rng)
    model_cfg = ModelConfig(arch=cfg.arch, height=cfg.preprocess.height, width=cfg.preprocess.width)
    model = SteeringNet(model_cfg)
    init_prov = {}
    if init is not None:
        if resume:
            raise UsageError("--init and --resume together: --resume continues <out>.last.pt")
        start = init_checkpoint(init, cfg)
        model.load_state_dict(_init_weights(start, model_cfg))
        init_prov = {"init": {"path": str(init), **_provenance_summary(start.provenance)}}
    model = fast_training_model(model.to(cfg.device))
    net = model  # what is trained: `model` itself, or its DistributedDataParallel wrapper
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [dist.local_rank] if str(cfg.device).startswith("cuda") else None
        net = DistributedDataParallel(model, device_ids=ids)
    if cfg.compile:
        net = torch.compile(net)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.epochs * len(stream)))
    out = Path(out)
    last_path = last_path_of(out)
    history, best, start_epoch = [], math.inf, 0
    if resume:
        start_epoch, best, history = _resume(last_path, model, opt, sched)
    writer = SummaryWriter(str(logdir)) if logdir and dist.main else None
    speeds = np.concatenate([e.speed for e in prepared])
    prov = {
        "train_episodes": [e.name for e in train_eps],
        "val_episodes": [e.name for e in val_eps],
        "train_frames": int(sum(len(e.steer) for e in train_eps)),
        "val_frames": int(sum(len(e.steer) for e in val_eps)),
        "target_speed_mps": _median_speed(speeds),
        "train_config": {k: v for k, v in asdict(cfg).items() if k != "preprocess"},
        **init_prov,
        **(provenance or {}),
    }
    for epoch in range(start_epoch, cfg.epochs):
        bar = tqdm(
            total=len(stream),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        loss = train_epoch(net, opt, sched, stream, cfg, rng, bar, dist)
        bar.close()
        if val_eps:
            val = evaluate_rmse(model, val_eps)
            improved, best = val < best, min(best, val)
            text = f"val rmse {val:.4f}"
        else:  # no validation: the checkpoint follows the last epoch, nothing is "val"
            val, improved, text = None, True, "no validation episode"
        history.append({"epoch": epoch + 1, "train_loss": loss, "val_rmse": val})
        if dist.main:
            print(f"epoch {epoch + 1}: train mse {loss:.5f}  {text}", file=sys.stderr)
        if writer is not None:
            writer.add_scalar("train/mse", loss, epoch + 1)
            if val is not None:
                writer.add_scalar("val/rmse", val, epoch + 1)
            writer.add_scalar("train/lr", sched.get_last_lr()[0], epoch + 1)
        seconds = time.monotonic() - t_start
        metrics = {
            "best_val_rmse": best if val_eps else None,
            "history": history,
            "train_seconds": round(seconds, 1),
        }
        if not val_eps:
            metrics["validation"] = "none: no validation episode, the last epoch's weights"
        if dist.world > 1:
            metrics["world_size"] = dist.world
        if improved and dist.main:
            save_checkpoint(out, model, model_cfg, cfg.preprocess, {**prov, **metrics})
        training_state = {
            "epoch": epoch + 1,
            "best": best,
            "history": history,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
        }
        if dist.main:
            save_checkpoint(
                last_path,
                model,
                model_cfg,
                cfg.preprocess,
                {**prov, **metrics},
                training_state=training_state,
            )
        if dist.world > 1:  # no rank runs ahead of the checkpoint rank 0 writes
            import torch.distributed as tdist

            tdist.barrier()
    if writer is not None:
        writer.close()
    return {
        "history": history,
        "best_val_rmse": best if val_eps else None,
        "validation": len(val_eps),
        "train_episodes": len(train_eps),
        "out": str(out),
        "seconds": time.monotonic() - t_start,
    }


def init_checkpoint(path: str | os.PathLike, cfg: TrainConfig):
    """The checkpoint `path` to start training from, checked against `cfg`.

    Raises:
        CheckpointError: unreadable, or its architecture or preprocessing differ from
            `cfg`'s (the message names the file and the option to change).
    """
    ckpt = _load_init(path)
    widen = ckpt.model_config.arch == "cnn" and cfg.arch == "cnn_stack"
    if ckpt.model_config.arch != cfg.arch and not widen:
        raise CheckpointError(
            f"--init {path} is a {ckpt.model_config.arch!r} network (only a cnn may start "
            f"a cnn_stack); pass --arch "
            f"{ckpt.model_config.arch} (this run asked for {cfg.arch!r})"
        )
    if ckpt.preprocess_config != cfg.preprocess:
        raise CheckpointError(
            f"--init {path} was trained with preprocessing {ckpt.preprocess_config}, "
            f"this run uses {cfg.preprocess}; leave --crop-top/--crop-bottom/--color "
            "unset to take the checkpoint's"
        )
    return ckpt


def _init_weights(start, model_cfg: ModelConfig) -> dict:
    """The --init checkpoint's weights for a `model_cfg` network. A single-frame `cnn`
    starts a frame-stack `cnn_stack`: its first convolution's weights, divided by the
    stack depth, go to each frame of the window, so the new network begins as the CNN
    on the window's mean frame (on a still scene: the CNN itself)."""
    weights = dict(start.state_dict)
    if start.model_config.arch == "cnn" and model_cfg.arch == "cnn_stack":
        key = "encoder.convs.0.weight"
        weights[key] = weights[key].repeat(1, model_cfg.stack, 1, 1) / model_cfg.stack
    return weights


def _load_init(path: str | os.PathLike):
    return load_checkpoint(path, option="--init")


def _provenance_summary(prov: dict) -> dict:
    """What a fine-tuned checkpoint records about the one it started from."""
    keep = ("data", "command", "best_val_rmse", "train_frames")
    return {k: prov[k] for k in keep if k in prov}


def _resume(last_path: Path, model, opt, sched) -> tuple[int, float, list]:
    ckpt = load_checkpoint(last_path, option="--resume")
    ts = ckpt.training_state
    if not ts:
        raise CheckpointError(f"--resume: {last_path} holds no optimizer state")
    model.load_state_dict(ckpt.state_dict)
    opt.load_state_dict(ts["optimizer"])
    sched.load_state_dict(ts["scheduler"])
    return int(ts["epoch"]), float(ts["best"]), list(ts["history"])


def _median_speed(speeds: np.ndarray) -> float | None:
    """The data's typical speed (the policy's default target); NaN = not yet reported."""
    finite = speeds[np.isfinite(speeds)]
    return float(np.median(finite)) if finite.size else None


def last_path_of(out: str | os.PathLike) -> Path:
    """The resumable file kept beside the checkpoint `out`."""
    out = Path(out)
    return out.with_name(out.stem + ".last.pt")
