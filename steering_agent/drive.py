"""`steering-agent drive`: one closed-loop episode, summarised (the `make demo` command).

Drives the shipped CNN+LSTM (`checkpoints/cnn_lstm.pt`) on a held-out road with a
progress bar, prints the metrics and writes the JSON, plots (the `plots` extra; without
it they are skipped, with a note) and an MP4. Where no trained checkpoint exists yet it
says so and drives the simulator's expert instead, labelled as the expert everywhere
(never presented as the agent).

`--live` streams the drive to Foxglove as it runs (camera, the agent's and the expert's
steer, speed, lateral error; steering_agent.ros.live_view, the `live` extra) on
ws://localhost:8765 (`--live-port`); `--live-wait S` first waits up to S seconds for a
client to subscribe, so the first frames are seen too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from steering_agent.common import cli_args
from steering_agent.evaluation import metrics
from steering_agent.evaluation.evaluate import (
    evaluate_policies,
    resolve_seeds,
    results_json,
)
from steering_agent.evaluation.vec_eval import EvalConfig
from steering_agent.policy.threads import set_torch_threads

AUTO = "auto"


def resolve_policy(spec: str) -> tuple[str, str | None]:
    """(policy spec for `vec_eval.make_policy`, a notice to print or None).

    Raises:
        FileNotFoundError: an explicit checkpoint path does not exist (a directory or a
            file that is no checkpoint is refused by `load_checkpoint`).
    """
    if spec == "expert":
        return "expert", "driving the simulator's EXPERT (--policy expert), not a learned agent"
    if spec != AUTO:
        if not Path(spec).exists():
            raise FileNotFoundError(
                f"--policy {spec} does not exist; pass a .pt from `steering-agent train`, "
                "leave --policy out for the shipped one, or use --policy expert"
            )
        return spec, None
    try:
        from steering_agent.common.package_files import shipped_checkpoint

        shipped = shipped_checkpoint()
    except FileNotFoundError as e:
        shipped, where = None, str(e)
    else:
        where = str(shipped)
    if shipped is not None and shipped.is_file():
        return str(shipped), None
    return "expert", (
        f"NO TRAINED CHECKPOINT FOUND ({where}). Driving the simulator's EXPERT instead: "
        "this run shows the expert driver, NOT the learned agent. Train one with "
        "`steering-agent train` or pass --policy PATH."
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        default=AUTO,
        metavar="PATH|expert",
        help="checkpoint to drive (default: the shipped checkpoints/cnn_lstm.pt) or 'expert'",
    )
    parser.add_argument(
        "--seed", type=cli_args.nonneg_int, default=0, help="offset into the evaluation seeds"
    )
    parser.add_argument("--route-length-m", type=cli_args.route_length, default=1000.0)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--width", type=cli_args.camera_px, default=200)
    parser.add_argument("--height", type=cli_args.camera_px, default=66)
    parser.add_argument(
        "--device",
        type=cli_args.device,
        default="auto",
        help=f"torch device for the checkpoint: {cli_args.DEVICES}",
    )
    parser.add_argument(
        "--threads",
        type=cli_args.positive_int,
        default=1,
        help="torch CPU threads (1 suits one camera stream)",
    )
    parser.add_argument("--no-video", action="store_true", help="skip the MP4")
    parser.add_argument(
        "--live", action="store_true", help="stream the drive to Foxglove (docs/live_view.md)"
    )
    parser.add_argument(
        "--live-port",
        type=cli_args.bounded(int, 1, 65535),
        default=8765,
        help="the live view's WebSocket port on localhost (default 8765)",
    )
    parser.add_argument(
        "--live-wait",
        type=cli_args.nonneg_float,
        default=0.0,
        metavar="S",
        help="with --live: wait up to S seconds for a Foxglove client before driving",
    )


def run(args: argparse.Namespace) -> int:
    """Checks every input and the output folder first, then drives; a user's mistake
    raises one of `cli_args.user_errors` (one line, exit 2, from `steering_agent.cli`)."""
    from steering_agent.evaluation import report

    cli_args.writable_dir(args.out, "--out")
    spec, notice = resolve_policy(args.policy)
    if spec != "expert":
        from steering_agent.policy.checkpoint import load_checkpoint

        load_checkpoint(spec, option="--policy")
    seeds = resolve_seeds(1, args.seed)
    if args.live:
        from steering_agent.common import extras

        extras.require("live", "--live (the Foxglove live view)")
    set_torch_threads(args.threads)
    if notice:
        print(f"*** {notice}", file=sys.stderr)
    skipped = report.plots_notice()
    if skipped:
        print(f"note: {skipped}", file=sys.stderr)
    cfg = EvalConfig(
        route_length_m=args.route_length_m, width=args.width, height=args.height, num_envs=1
    )
    name = "expert" if spec == "expert" else Path(spec).stem
    video = None
    if not args.no_video:
        video = report.EpisodeVideo(args.out / f"episode_{name}_{seeds[0]}.mp4", name)
    live = None
    hook = video.add if video else None
    try:
        if args.live:
            from steering_agent.ros.live_view import open_live_view

            live = open_live_view(args.live_port, args.live_wait)
            hook = live.gym_hook(hook)
        runs = evaluate_policies([spec], seeds, cfg, args.device, {name: hook} if hook else None)
    finally:
        if video:
            video.close()
        if live is not None:
            live.close()
    doc = results_json(runs, seeds, cfg)
    if notice:
        doc["notice"] = notice
    print(summary_text(name, doc["policies"][name], seeds[0]))
    args.out.mkdir(parents=True, exist_ok=True)
    paths = report.write_report(args.out, doc, runs, video=video)
    (args.out / "drive.json").write_text(json.dumps(doc, indent=2))
    for path in [args.out / "drive.json", *paths]:
        print(f"wrote {path}")
    return 0


def summary_text(name: str, row: dict, seed: int) -> str:
    """The printed summary of one episode's metrics."""
    clamped = ", clamped at 0" if row.get("autonomy_clamped") else ""
    return "\n".join(
        [
            f"policy {name} on held-out seed {seed}:",
            f"  autonomy          {row['autonomy_pct']:7.1f} %  ({row['interventions']} "
            f"interventions beyond {metrics.INTERVENTION_THRESHOLD_M:g} m{clamped})",
            f"  lateral error     {row['mean_abs_lateral_m']:7.3f} m mean, "
            f"{row['p95_abs_lateral_m']:.3f} m p95",
            f"  route completion  {row['route_completion_pct']:7.1f} %  "
            f"({row['distance_km']:.3f} km in {row['elapsed_s']:.1f} s sim time)",
            f"  steer smoothness  {row['steer_smoothness']:7.3f} /s",
        ]
    )
