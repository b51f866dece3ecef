"""`steering-agent drive`: one closed-loop episode, summarised (the `make demo` command).

Drives the shipped CNN+LSTM (`checkpoints/cnn_lstm.pt`) on a held-out road with a
progress bar, prints the metrics and writes the JSON, plots (the `plots` extra; without
it they are skipped, with a note) and an MP4. Where no trained checkpoint exists yet it
says so and drives the simulator's expert instead, labelled as the expert everywhere
(never presented as the agent).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
        FileNotFoundError: an explicit checkpoint path does not exist.
    """
    if spec == "expert":
        return "expert", "driving the simulator's EXPERT (--policy expert), not a learned agent"
    if spec != AUTO:
        if not Path(spec).is_file():
            raise FileNotFoundError(
                f"--policy {spec}: no such checkpoint; pass a .pt from `steering-agent train`, "
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
    parser.add_argument("--seed", type=int, default=0, help="offset into the evaluation seeds")
    parser.add_argument("--route-length-m", type=float, default=1000.0)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--height", type=int, default=66)
    parser.add_argument("--device", default="auto", help="torch device for the checkpoint")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 suits one camera stream)"
    )
    parser.add_argument("--no-video", action="store_true", help="skip the MP4")


def run(args: argparse.Namespace) -> int:
    from steering_agent.evaluation import report

    try:
        set_torch_threads(args.threads)
        spec, notice = resolve_policy(args.policy)
        seeds = resolve_seeds(1, args.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"steering-agent drive: {e}", file=sys.stderr)
        return 2
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
    try:
        runs = evaluate_policies(
            [spec], seeds, cfg, args.device, {name: video.add} if video else None
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"steering-agent drive: {e}", file=sys.stderr)
        return 2
    finally:
        if video:
            video.close()
    doc = results_json(runs, seeds, cfg)
    if notice:
        doc["notice"] = notice
    print(summary_text(name, doc["policies"][name], seeds[0]))
    paths = report.write_report(args.out, doc, runs, video=video)
    (args.out / "drive.json").write_text(json.dumps(doc, indent=2))
    for path in [args.out / "drive.json", *paths]:
        print(f"wrote {path}")
    return 0


def summary_text(name: str, row: dict, seed: int) -> str:
    """The printed summary of one episode's metrics."""
    return "\n".join(
        [
            f"policy {name} on held-out seed {seed}:",
            f"  autonomy          {row['autonomy_pct']:7.1f} %  ({row['interventions']} "
            f"interventions beyond {metrics.INTERVENTION_THRESHOLD_M:g} m)",
            f"  lateral error     {row['mean_abs_lateral_m']:7.3f} m mean, "
            f"{row['p95_abs_lateral_m']:.3f} m p95",
            f"  route completion  {row['route_completion_pct']:7.1f} %  "
            f"({row['distance_km']:.3f} km in {row['elapsed_s']:.1f} s sim time)",
            f"  steer smoothness  {row['steer_smoothness']:7.3f} /s",
        ]
    )
