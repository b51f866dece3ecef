"""Soak the agent and the simulator bridge together: real time at 20 Hz for a long drive.

    .venv/bin/python tools/closed_loop_soak.py --duration 600

Starts `sim_bridge` (mode realtime) and `agent` as processes, samples both processes'
resident memory (VmRSS, /proc/<pid>/status) every few seconds, and prints (JSON) the
frames published and answered, the watchdog brakes, and each process's memory growth
from the end of the warm-up to the end (the goal: under 5%, every frame answered).
Not a CI test: run it once, on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of driving")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--every", type=float, default=5.0, help="memory sample period (s)")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.out is not None:
        from steering_agent.common.files import check_writable_file

        check_writable_file(args.out, "--out")

    from steering_agent.ros.closed_loop import _read_json, running_node
    from steering_agent.ros.dds import use_local_transport

    use_local_transport()
    work = Path(tempfile.mkdtemp(prefix="closed_loop_soak_"))
    metrics = work / "bridge_metrics.json"
    steps = int(args.duration * args.rate)
    bridge_p = {"mode": "realtime", "rate_hz": args.rate, "route_length_m": 100_000.0,
                "max_steps": steps, "metrics_file": str(metrics), "metrics_every": 100}  # fmt: skip
    agent_p = {"control_type": "carla", "stats_file": str(work / "agent_stats.json")}
    samples: dict[str, list[tuple[float, float]]] = {"agent": [], "sim_bridge": []}
    t0 = time.monotonic()
    with ExitStack() as stack:
        procs = {
            "sim_bridge": stack.enter_context(
                running_node("sim_bridge", bridge_p, work / "sim_bridge.log")
            ),
            "agent": stack.enter_context(running_node("agent", agent_p, work / "agent.log")),
        }
        while not _read_json(metrics).get("done"):
            if any(p.poll() is not None for p in procs.values()):
                break
            if time.monotonic() - t0 > args.duration + 120.0:
                break
            for name, p in procs.items():
                samples[name].append((time.monotonic() - t0, rss_mb(p.pid)))
            time.sleep(args.every)
    bridge = _read_json(metrics)
    result = {"duration_s": args.duration, "rate_hz": args.rate, "wall_s": time.monotonic() - t0,
              "reason": bridge.get("reason"), "frames_published": bridge.get("frames_published"),
              "frames_answered": bridge.get("frames_answered"),
              "frames_without_control": bridge.get("frames_without_control"),
              "watchdog_controls": bridge.get("watchdog_controls"),
              "interventions": bridge.get("interventions"), "logs": str(work)}  # fmt: skip
    for name, rows in samples.items():
        base = [mb for t, mb in rows if t >= args.warmup]
        if base:
            growth = 100.0 * (base[-1] - base[0]) / base[0]
            result[f"{name}_rss_mb"] = {"after_warmup": round(base[0], 1),
                                        "end": round(base[-1], 1), "max": round(max(base), 1),
                                        "growth_pct": round(growth, 2)}  # fmt: skip
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0 if bridge.get("reason") == "max_steps" else 1


if __name__ == "__main__":
    sys.exit(main())
