"""`steering-agent train`: fit a CNN+LSTM (or the CNN baseline) to recorded expert drives.

The command: its options, the checks of its inputs and outputs before any work, and the
run; the training itself is `steering_agent.training`.
"""

from __future__ import annotations

import argparse
import itertools
import math
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from steering_agent.common import cli_args
from steering_agent.common.cli_args import UsageError
from steering_agent.common.extras import require
from steering_agent.interfaces import topics
from steering_agent.policy.backends import resolve_device
from steering_agent.policy.model import ARCHS
from steering_agent.policy.preprocess import PreprocessConfig
from steering_agent.training import PRECISIONS, TrainConfig, _load_init, last_path_of, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p = PreprocessConfig()
    a = cli_args
    parser.add_argument("--data", required=True, help="folder of recorded bags")
    parser.add_argument(
        "--arch", choices=ARCHS, default=None, help=f"default: --init's, else {d.arch}"
    )
    parser.add_argument("--out", required=True, help="checkpoint to write (best validation)")
    parser.add_argument("--epochs", type=a.positive_int, default=d.epochs)
    parser.add_argument(
        "--seq-len", type=a.positive_int, default=d.seq_len, help="frames per TBPTT chunk"
    )
    parser.add_argument("--batch", type=a.positive_int, default=d.batch, help="sequences per batch")
    parser.add_argument(
        "--lr", type=a.positive_float, default=d.lr, help="peak learning rate (one-cycle)"
    )
    parser.add_argument(
        "--val-fraction",
        type=a.fraction,
        default=d.val_fraction,
        help="share of episodes held out for validation, in [0, 1) (0: none)",
    )
    parser.add_argument("--seed", type=a.nonneg_int, default=d.seed)
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from <out>.last.pt")
    start.add_argument(
        "--init",
        default=None,
        metavar="CHECKPOINT",
        help="start from this checkpoint's weights (fine-tuning; same --arch, and its "
        "preprocessing unless --crop-top/--crop-bottom/--color are given)",
    )
    parser.add_argument("--logdir", default=None, help="TensorBoard folder (default: none)")
    parser.add_argument("--max-shift-px", type=a.nonneg_int, default=d.max_shift_px)
    parser.add_argument("--shift-steer-per-px", type=a.finite_float, default=d.shift_steer_per_px)
    parser.add_argument(
        "--delta-weight",
        type=a.nonneg_float,
        default=d.delta_weight,
        help="weight of the frame-to-frame steering-change loss (0: off)",
    )
    parser.add_argument("--crop-top", type=a.fraction, default=None, help=f"default {p.crop_top}")
    parser.add_argument(
        "--crop-bottom", type=a.fraction, default=None, help=f"default {p.crop_bottom}"
    )
    parser.add_argument("--color", choices=("yuv", "rgb"), default=None, help=f"default {p.color}")
    parser.add_argument(
        "--device", type=a.device, default="auto", help=f"torch device: {a.DEVICES}"
    )
    parser.add_argument(
        "--camera-faults",
        type=a.nonneg_float,
        default=d.camera_faults_per_s,
        metavar="RATE",
        help="camera faults (black, frozen, dim, glare spans of 0.1-1.5 s, labels kept) "
        "started per second per sequence; e.g. 0.15 (default 0: off)",
    )
    parser.add_argument(
        "--label-topic",
        default=topics.EXPERT_CONTROL,
        help=f"CarlaEgoVehicleControl topic whose steer is the label (default "
        f"{topics.EXPERT_CONTROL}; {topics.CONTROL} for drives without an expert)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for the prepared (preprocessed, calibrated) frames, reused by later "
        "runs (default: $STEERING_AGENT_CACHE or ~/.cache/steering_agent/frames)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="prepare the frames in memory, cache nothing"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=d.precision,
        help="fp32 (default); bf16: autocast of the encoder (a CPU with AVX512-BF16/AMX, "
        "or CUDA); auto: bf16 where the CPU has it natively, else fp32; weights, LSTM "
        "and loss stay fp32",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network (about a minute to compile; measured no faster "
        "on a 2-core CPU, docs/performance.md)",
    )
    parser.add_argument("--no-progress", action="store_true")


def _command(args: argparse.Namespace) -> str:
    parts = ["steering-agent", "train"]
    for k, v in vars(args).items():
        if k.startswith("_") or v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        parts += [flag] if v is True else [flag, str(v)]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    """`steering-agent train`: check every input and output, prepare the bags (through the
    frame cache), train, print the best validation RMSE. A user's mistake raises one of
    `cli_args.user_errors`."""
    from steering_agent.data.frame_cache import default_cache_dir, prepared_episodes

    if args.logdir:  # before any work: TensorBoard is an extra
        require("tensorboard", "--logdir (TensorBoard logging)")
    check_inputs(args)
    cfg = _config(args)
    cache = None if args.no_cache else (args.cache or default_cache_dir())
    episodes = prepared_episodes(args.data, cfg.preprocess, args.label_topic, cache)
    first = next(episodes, None)
    if first is None:
        print(
            f"error: no usable episodes in --data {args.data}; record some with "
            "`steering-agent record --out DIR`",
            file=sys.stderr,
        )
        return 2
    return _run(args, cfg, itertools.chain([first], episodes))


def check_inputs(args: argparse.Namespace) -> None:
    """What `train` needs, checked before the bags are read: both checkpoint files can be
    written (never a directory), the --logdir folder too, --data exists, and the file to
    resume from or start from (--init) loads.

    Raises:
        UsageError, CheckpointError: one line naming the option and the fix.
    """
    out = cli_args.writable_file(args.out, "--out")
    cli_args.writable_file(last_path_of(out), "--out (its resumable <out>.last.pt)")
    if args.logdir:
        cli_args.writable_dir(args.logdir, "--logdir")
    if not Path(args.data).exists():
        raise UsageError(
            f"--data {args.data} does not exist; pass the folder `steering-agent record "
            "--out DIR` wrote"
        )
    if args.resume and not last_path_of(out).is_file():
        raise UsageError(
            f"--resume: {last_path_of(out)} does not exist (nothing to continue); "
            "train without --resume first, or pass the --out of the run to continue"
        )
    if args.init:
        _load_init(args.init)
    given = {k: getattr(args, k) for k in ("crop_top", "crop_bottom")}
    if sum(v for v in given.values() if v is not None) >= 1.0:
        raise UsageError(
            f"--crop-top {args.crop_top} and --crop-bottom {args.crop_bottom} leave no image "
            "rows; together they must stay below 1"
        )


def _init_or_default(args: argparse.Namespace) -> tuple[str, PreprocessConfig]:
    """(architecture, preprocessing) of the --init checkpoint, or the defaults."""
    if not args.init:
        return TrainConfig().arch, PreprocessConfig()
    ckpt = _load_init(args.init)
    return ckpt.model_config.arch, ckpt.preprocess_config


def _config(args: argparse.Namespace) -> TrainConfig:
    arch, pre = _init_or_default(args)
    # --crop-top/--crop-bottom/--color over the --init checkpoint's preprocessing
    given = {k: getattr(args, k) for k in ("crop_top", "crop_bottom", "color")}
    try:
        pre = replace(pre, **{k: v for k, v in given.items() if v is not None})
    except ValueError as e:  # e.g. a crop that, with --init's, leaves no rows
        raise UsageError(f"--crop-top/--crop-bottom/--color: {e}") from None
    return TrainConfig(
        arch=args.arch or arch,
        epochs=args.epochs,
        seq_len=args.seq_len,
        batch=args.batch,
        lr=args.lr,
        val_fraction=args.val_fraction,
        seed=args.seed,
        max_shift_px=args.max_shift_px,
        shift_steer_per_px=args.shift_steer_per_px,
        delta_weight=args.delta_weight,
        camera_faults_per_s=args.camera_faults,
        preprocess=pre,
        device=str(resolve_device(args.device)),
        precision=args.precision,
        compile=args.compile,
    )


def _run(args: argparse.Namespace, cfg: TrainConfig, episodes) -> int:
    prov = {"data": str(args.data), "command": _command(args)}
    result = train(
        episodes,
        cfg,
        args.out,
        args.logdir,
        args.resume,
        prov,
        progress=not args.no_progress,
        init=args.init,
    )
    if result["best_val_rmse"] is None:
        last = result["history"][-1]["train_loss"] if result["history"] else math.nan
        print(
            f"no validation episode (--val-fraction {args.val_fraction:g}, "
            f"{result['train_episodes']} training episode(s)), so no val rmse: "
            f"{result['out']} holds the last epoch, train mse {last:.5f} "
            f"({result['seconds']:.0f} s)"
        )
    else:
        print(
            f"best val rmse {result['best_val_rmse']:.4f} -> {result['out']} "
            f"({result['seconds']:.0f} s)"
        )
    return 0
