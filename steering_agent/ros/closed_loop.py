"""`steering-agent closed-loop`: sim_bridge + agent (+ recorder) as processes over DDS.

`ros2 launch` is not available everywhere (no launch wheels on PyPI), so this starts the
same executables with the same parameter files as launch/sim.launch.py (a test keeps the
two in agreement), waits for the end of the route on topics.METRICS and prints a JSON
summary. `measure_dds_latency` times camera-publish -> control-receive over loopback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from steering_agent.common.package_files import config_file
from steering_agent.common.stats import percentiles_ms
from steering_agent.interfaces.stamps import ns_to_sec_nanosec, stamp_to_ns
from steering_agent.policy.calibration import CANONICAL_FOV_DEG, CANONICAL_MOUNT
from steering_agent.policy.control import VehicleSpec
from steering_agent.ros.dds import (
    ros_context,
    ros_participant_node,
    use_local_transport,
)

_PROBES = itertools.count()
# The agent's camera and car parameters for the embedded simulator (sim_bridge): its
# camera is the canonical training camera, its car the canonical car, so the agent maps
# nothing (the agent's own defaults are the CARLA ROS bridge's camera and car).
SIM_AGENT_CAMERA = {
    **{f"camera_{k}": float(v) for k, v in CANONICAL_MOUNT.items()},
    "camera_fov_deg": CANONICAL_FOV_DEG,
    **{k: float(v) for k, v in VehicleSpec().to_dict().items()},
}

# executable -> (module run with `python -m`, parameter file in config/); launch files too.
NODES: dict[str, tuple[str, str]] = {
    "sim_bridge": ("steering_agent.ros.sim_bridge", "sim_bridge.yaml"),
    "agent": ("steering_agent.ros.agent_node", "agent.yaml"),
    "recorder": ("steering_agent.ros.recorder_node", "recorder.yaml"),
}


def _ros_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def node_command(
    executable: str, overrides: dict | None = None, remaps: dict | None = None
) -> list[str]:
    """The command line that runs `executable` with its config file, `-p` overrides and
    `-r` name remappings (e.g. {"/agent/reset": "/other/reset"})."""
    module, params = NODES[executable]
    cmd = [sys.executable, "-m", module, "--ros-args", "--params-file", str(config_file(params))]
    for name, value in (overrides or {}).items():
        cmd += ["-p", f"{name}:={_ros_value(value)}"]
    for old, new in (remaps or {}).items():
        cmd += ["-r", f"{old}:={new}"]
    return cmd


def start_node(
    executable: str, overrides: dict, log_path: Path, remaps: dict | None = None
) -> subprocess.Popen:
    """Start one node process; its stdout and stderr go to `log_path`."""
    return _start(node_command(executable, overrides, remaps), log_path)


def live_view_command(port: int) -> list[str]:
    """The live view node (steering_agent.ros.live_view): no parameter file."""
    module = "steering_agent.ros.live_view"
    return [sys.executable, "-m", module, "--ros-args", "-p", f"port:={int(port)}"]


def _start(cmd: list[str], log_path: Path, cpus: set[int] | None = None) -> subprocess.Popen:
    """`cmd` with its output to `log_path`; `cpus`: the CPUs it may run on (Linux), set
    as soon as it runs, before the interpreter has made a thread (those inherit them).
    Not in a `preexec_fn`: this process has DDS threads, and code between fork and exec
    could deadlock on a lock one of them held."""
    use_local_transport()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    repo = str(Path(__file__).resolve().parents[2])  # run this checkout's code, not a copy
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if cpus:
        try:
            os.sched_setaffinity(proc.pid, cpus)
        except OSError:
            proc.kill()
            proc.wait()
            raise
    return proc


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """SIGINT (a clean ROS shutdown), then SIGKILL if it has not exited in `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextmanager
def running_node(
    executable: str, overrides: dict, log_path: Path, cmd: list | None = None,
    cpus: set[int] | None = None,
):  # fmt: skip
    """A node process for the `with` block (`cmd`: a command line of its own instead of
    `node_command`'s; `cpus` as in `_start`); always stopped at its end."""
    proc = _start(cmd or node_command(executable, overrides), log_path, cpus)
    try:
        yield proc
    finally:
        stop_process(proc)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_for_done(metrics_file: Path, procs: dict, timeout_s: float) -> tuple[str, dict]:
    """Poll the bridge's metrics file until the route ends, a node exits, or `timeout_s`
    passes; (status, the latest metrics)."""
    deadline = time.monotonic() + timeout_s
    last: dict = {}
    while True:
        last = _read_json(metrics_file) or last
        if last.get("done"):
            return "done", last
        dead = [name for name, p in procs.items() if p.poll() is not None]
        if dead:
            return f"{', '.join(dead)} exited early", last
        if time.monotonic() >= deadline:
            return "timeout", last
        time.sleep(0.1)


def run_closed_loop(
    seed: int,
    route_length_m: float = 1000.0,
    mode: str = "sync",
    width: int = 200,
    height: int = 66,
    checkpoint: str | None = None,
    control_type: str = "auto",
    record: str | None = None,
    timeout_s: float = 600.0,
    workdir: str | os.PathLike | None = None,
    agent_overrides: dict | None = None,
    live_port: int | None = None,
    camera: dict | None = None,
) -> dict:
    """Drive one route with sim_bridge and agent as separate processes; the summary.

    With `record`, a recorder process bags the topics of `RECORDED` (the expert's labels
    and the interventions included: a bag `train` learns from, docs/ros_data.md); with
    `live_port`, a live view process streams the drive to Foxglove on that port. With
    `camera` (env keywords of `sim.limits.MOUNT_LIMITS`: `camera_height_m`, ...,
    `fov_deg`), the simulator's camera has that mount and the agent is told it (the
    training camera's otherwise); the agent calibrates it onto the training camera.

    Returns:
        dict with `status` (`done`, `timeout` or `<node> exited early`), the bridge's
        `reason`, `distance_m`, `route_completion`, `mean_abs_lateral_m`,
        `max_abs_lateral_m`, `interventions`, `frames`, `controls`, `frames_answered`,
        `frames_without_control`, `duplicate_controls`, `agent_frame_ms` (per-frame time
        in the node: median/p90/p99/max), `wall_s`, and the full `bridge` / `agent` stats.
    """
    work = Path(workdir or tempfile.mkdtemp(prefix="closed_loop_"))
    work.mkdir(parents=True, exist_ok=True)
    stats = work / "agent_stats.json"
    stats.unlink(missing_ok=True)
    bridge_p = {"seed": seed, "route_length_m": float(route_length_m), "mode": mode,
                "width": width, "height": height, "control_type": control_type}  # fmt: skip
    camera = dict(camera or {})
    bridge_p.update(camera)
    told = {("camera_fov_deg" if k == "fov_deg" else k): float(v) for k, v in camera.items()}
    agent_p = {"control_type": control_type, "stats_file": str(stats), **SIM_AGENT_CAMERA,
               **told, **(agent_overrides or {})}  # fmt: skip
    if checkpoint:
        agent_p["checkpoint"] = str(Path(checkpoint).resolve())
    t0 = time.monotonic()
    # The harness itself joins no DDS domain: the bridge also writes its metrics (those
    # of topics.METRICS) to a file, which is polled here.
    metrics_file = work / "bridge_metrics.json"
    metrics_file.unlink(missing_ok=True)
    bridge_p["metrics_file"] = str(metrics_file.resolve())
    with ExitStack() as stack:
        procs = {}
        if record:
            rec_p = {"output": str(record), "topics": recorded_topics()}
            procs["recorder"] = stack.enter_context(
                running_node("recorder", rec_p, work / "recorder.log")
            )
        if live_port is not None:
            procs["live_view"] = stack.enter_context(
                running_node("live_view", {}, work / "live_view.log",
                             live_view_command(live_port))
            )  # fmt: skip
        # The agent starts first and stops first (the bridge's last frames need no answer).
        procs["sim_bridge"] = stack.enter_context(
            running_node("sim_bridge", bridge_p, work / "sim_bridge.log")
        )
        procs["agent"] = stack.enter_context(running_node("agent", agent_p, work / "agent.log"))
        status, last = _wait_for_done(metrics_file, procs, timeout_s)
    wall = time.monotonic() - t0
    agent = _read_json(stats)
    if status != "done":
        for name in procs:
            print(
                f"--- {name} log (last lines) ---\n{_tail(work / f'{name}.log')}", file=sys.stderr
            )
    return _summary(status, last, agent, wall, work)


def recorded_topics() -> list[str]:
    """What `--record` bags: the recorder's defaults (camera, speed, the agent's command,
    /clock, the expert's labels, interventions, lateral error, metrics)."""
    from steering_agent.ros.recorder_node import DEFAULT_TOPICS

    return list(DEFAULT_TOPICS)


def _summary(status: str, bridge: dict, agent: dict, wall_s: float, work: Path) -> dict:
    summary = bridge.get("summary", {})
    return {
        "status": status,
        "reason": bridge.get("reason"),
        "seed": bridge.get("seed"),
        "mode": bridge.get("mode"),
        "distance_m": bridge.get("progress_m"),
        "route_completion": bridge.get("route_completion"),
        "mean_abs_lateral_m": summary.get("mean_abs_lateral_m"),
        "max_abs_lateral_m": bridge.get("max_abs_lateral_m"),
        "interventions": bridge.get("interventions"),
        "autonomy_pct": summary.get("autonomy_pct"),
        "frames": bridge.get("frames_published"),
        "controls": bridge.get("controls_received"),
        "frames_answered": bridge.get("frames_answered"),
        "frames_without_control": bridge.get("frames_without_control"),
        "duplicate_controls": bridge.get("duplicate_controls"),
        "agent_frame_ms": agent.get("total_ms"),
        "wall_s": round(wall_s, 2),
        "logs": str(work),
        "bridge": bridge,
        "agent": agent,
    }


def _camera_frames(width: int, height: int, count: int = 8) -> list:
    """`count` distinct serialized bgra8 Images of random pixels (`ImageCdr`s, published
    as sim_bridge publishes its frames)."""
    import cv2
    import numpy as np

    from steering_agent.ros.image_cdr import ImageCdr

    rng = np.random.default_rng(0)
    frames = []
    for _ in range(count):
        cdr = ImageCdr(height, width, "bgra8", 4, "ego_vehicle/rgb_front")
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA, dst=cdr.pixels)
        frames.append(cdr)
    return frames


def measure_dds_latency(
    width: int,
    height: int,
    frames: int = 200,
    checkpoint: str | None = None,
    warmup: int = 10,
    reply_timeout_s: float = 2.0,
    workdir: str | os.PathLike | None = None,
    cpus: tuple[int, int] | None = None,
) -> dict:
    """Camera-publish -> control-receive latency through an `agent` process over loopback.

    Publishes serialized bgra8 frames of `width` x `height` one at a time (the next after the
    previous frame's control arrived, or after `reply_timeout_s`), 50 ms apart in stamp
    time, and times each until the CarlaEgoVehicleControl with its stamp comes back.
    `cpus=(camera, agent)` pins this process (the camera) and the agent process to one
    CPU each for the measurement (as `taskset -c` would; Linux).

    Returns:
        dict(width, height, frames, lost, latency_ms {median, p90, p99, max}, agent: the
        node's own per-frame stats (decode + policy + publish), incl. `total_ms`).
    """
    from carla_msgs.msg import CarlaEgoVehicleControl
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from steering_agent.interfaces import topics
    from steering_agent.ros.serialized_publish import RawPublisher

    work = Path(workdir or tempfile.mkdtemp(prefix="dds_latency_"))
    work.mkdir(parents=True, exist_ok=True)
    stats = work / "agent_stats.json"
    agent_p = {**SIM_AGENT_CAMERA, "control_type": "carla", "stats_file": str(stats),
               "max_gap_s": 10.0, "watchdog_timeout_s": 10.0}  # fmt: skip
    if checkpoint:
        agent_p["checkpoint"] = str(Path(checkpoint).resolve())
    images = _camera_frames(width, height)
    latencies: list[float] = []
    lost = 0
    with (
        _pinned({cpus[0]} if cpus else None),
        ros_context() as ctx,
        # a new name each call: rosout warns about two nodes of one name in a process
        ros_participant_node(ctx, f"latency_probe_{next(_PROBES)}") as (node, executor),
        running_node("agent", agent_p, work / "agent.log",
                     cpus={cpus[1]} if cpus else None) as proc,
    ):  # fmt: skip
        replies: dict[int, float] = {}
        node.create_subscription(
            CarlaEgoVehicleControl, topics.CONTROL,
            lambda m: replies.setdefault(stamp_to_ns(m.header.stamp),
                                         time.perf_counter()),
            QoSProfile(depth=10),
        )  # fmt: skip
        pub = node.create_publisher(Image, topics.IMAGE, QoSProfile(depth=1))
        # as sim_bridge publishes: from the frame's buffer (serialized_publish)
        raw_pubs = [RawPublisher(pub, image.buffer) for image in images]
        deadline = time.monotonic() + 60.0
        while pub.get_subscription_count() == 0 or node.count_publishers(topics.CONTROL) == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not come up:\n{_tail(work / 'agent.log')}")
            executor.spin_once(timeout_sec=0.1)
        for i in range(warmup + frames):
            frame = images[i % len(images)]
            ns = (i + 1) * 50_000_000
            frame.set_stamp(*ns_to_sec_nanosec(ns))
            t_sent = time.perf_counter()
            raw_pubs[i % len(images)].publish()
            while ns not in replies and time.perf_counter() - t_sent < reply_timeout_s:
                executor.spin_once(timeout_sec=reply_timeout_s)
            if i < warmup:
                continue
            if ns in replies:
                latencies.append(replies[ns] - t_sent)
            else:
                lost += 1
    result = {"width": width, "height": height, "frames": frames, "lost": lost,
              "latency_ms": percentiles_ms(latencies), "agent": _read_json(stats)}  # fmt: skip
    if workdir is None:  # a failed run raised above and keeps its agent.log for reading
        shutil.rmtree(work, ignore_errors=True)
    return result


def _threads() -> set[int]:
    """This process's thread ids (Linux /proc; empty elsewhere)."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


@contextmanager
def _pinned(cpus: set[int] | None):
    """This thread on `cpus` for the block (None: unchanged), then as it was; so are the
    threads made meanwhile (a DDS participant's, kept until exit), so that nothing of
    this process stays pinned after the measurement."""
    if not cpus:
        yield
        return
    before, old_threads = os.sched_getaffinity(0), _threads()
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
        for tid in _threads() - old_threads:
            with suppress(OSError):  # the thread has ended
                os.sched_setaffinity(tid, before)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from steering_agent.common import cli_args as a

    parser.add_argument("--seed", type=a.nonneg_int, default=None,
                        help="road seed (default: the first evaluation seed)")  # fmt: skip
    parser.add_argument("--route-length-m", type=a.route_length, default=1000.0)
    parser.add_argument("--mode", choices=("sync", "realtime"), default="sync")
    parser.add_argument("--width", type=a.camera_px, default=200)
    parser.add_argument("--height", type=a.camera_px, default=66)
    parser.add_argument("--checkpoint", default=None,
                        help="default: the shipped checkpoints/cnn_lstm.pt")  # fmt: skip
    parser.add_argument("--control-type", choices=("auto", "carla", "twist"), default="auto")
    parser.add_argument("--record", default=None, metavar="DIR",
                        help="also record the drive (rosbag2 MCAP) into DIR")  # fmt: skip
    parser.add_argument("--timeout", type=a.positive_float, default=900.0,
                        help="seconds (wall clock)")  # fmt: skip
    parser.add_argument("--workdir", default=None, help="logs and agent stats (default: temp)")
    parser.add_argument(
        "--live",
        action="store_true",
        help="stream the drive to Foxglove (the `live` extra; docs/live_view.md)",
    )
    parser.add_argument(
        "--live-port", type=a.bounded(int, 1, 65535), default=8765,
        help="the live view's WebSocket port on localhost (default 8765)",
    )  # fmt: skip
    parser.add_argument("--out", default=None, help="also write the JSON summary here")
    from sim.limits import MOUNT_LIMITS

    cam = parser.add_argument_group(
        "the simulator's camera (default: the training camera; the agent is told it)"
    )
    a.range_options(cam, MOUNT_LIMITS)


def run(args: argparse.Namespace) -> int:
    """Checks every output and the checkpoint before a node starts, then drives. A
    user's mistake raises one of `cli_args.user_errors` (one line, exit 2)."""
    from sim.seeds import eval_seeds
    from steering_agent.common import cli_args

    if args.out:
        cli_args.writable_file(args.out, "--out")
    if args.record:
        cli_args.writable_dir(args.record, "--record")
    if args.workdir:
        cli_args.writable_dir(args.workdir, "--workdir")
    if args.checkpoint:
        from steering_agent.policy.checkpoint import load_checkpoint

        load_checkpoint(args.checkpoint, option="--checkpoint")
    if args.live:
        from steering_agent.common import extras

        extras.require("live", "--live (the Foxglove live view)")
    seed = eval_seeds(1)[0] if args.seed is None else args.seed
    result = run_closed_loop(
        seed, args.route_length_m, args.mode, args.width, args.height, args.checkpoint,
        args.control_type, args.record, args.timeout, args.workdir,
        live_port=args.live_port if args.live else None, camera=_camera_args(args),
    )  # fmt: skip
    brief = {k: v for k, v in result.items() if k not in ("bridge", "agent")}
    text = json.dumps(brief, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0 if result["status"] == "done" else 1


def _camera_args(args: argparse.Namespace) -> dict:
    """The camera options given on the command line, as env keywords."""
    from sim.limits import MOUNT_LIMITS

    return {k: getattr(args, k) for k in MOUNT_LIMITS if getattr(args, k, None) is not None}
