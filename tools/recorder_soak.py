"""Soak-measure the `recorder` node: fed 800x600 bgra8 at 30 Hz by another process.

    .venv/bin/python tools/recorder_soak.py --duration 60

Starts the recorder and tools/feed_images.py as processes, stops the recorder with
SIGINT after the feeder is done, and prints (JSON) published vs recorded counts, whether
the bag closed completely, and the recorder's CPU use: during the feed (from
/proc/<pid>/stat) and over its whole life (wait4 rusage). Run it once, on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument(
        "--transport",
        choices=("local", "default", "large_data"),
        default="local",
        help="local: config/fastdds_local.xml (SHM 8 MB + UDP); default: Fast DDS's "
        "builtin transports; large_data: FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (SHM + TCP)",
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the bags in this folder")
    args = parser.parse_args(argv)

    from rosbags.rosbag2 import Reader

    from steering_agent.interfaces import topics

    env = {**os.environ, "PYTHONPATH": str(REPO), "AMENT_PREFIX_PATH": sys.prefix}
    env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    from steering_agent.ros.dds import TRANSPORT_CHOICES, local_transport_env

    for name in TRANSPORT_CHOICES:  # this run's choice, not the caller's environment
        env.pop(name, None)
    if args.transport == "local":  # default: 2 MB frames crowd out small samples (measured)
        env = local_transport_env(env)
    elif args.transport == "large_data":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    tmp = tempfile.TemporaryDirectory()
    output = args.keep or Path(tmp.name) / "rec"
    fed = [topics.IMAGE, topics.SPEEDOMETER, topics.CLOCK]
    recorder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "steering_agent.ros.recorder_node",
            "--ros-args",
            "-p",
            f"output:={output}",
            "-p",
            "topics:=[" + ",".join(f"'{t}'" for t in fed) + "]",
        ],
        cwd=REPO,
        env=env,
    )
    start = time.monotonic()
    feeder = subprocess.Popen(
        [
            sys.executable,
            "tools/feed_images.py",
            "--rate",
            str(args.rate),
            "--duration",
            str(args.duration),
            "--width",
            str(args.width),
            "--height",
            str(args.height),
            "--linger",
            "4",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)  # discovery; the feeder waits for the subscriptions before it starts
    cpu0, t0 = cpu_seconds(recorder.pid), time.monotonic()
    out, _ = feeder.communicate()
    cpu1, t1 = cpu_seconds(recorder.pid), time.monotonic()
    recorder.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(recorder.pid, 0)
    recorder.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    published = json.loads(out.strip().splitlines()[-1])["published"]
    recorded: dict[str, int] = {}
    bags = sorted(output.iterdir())
    for bag in bags:
        with Reader(bag) as reader:
            for conn in reader.connections:
                recorded[conn.topic] = recorded.get(conn.topic, 0) + conn.msgcount
    result = {
        "frames": f"{args.width}x{args.height} bgra8 at {args.rate:g} Hz for {args.duration:g} s",
        "transport": args.transport,
        "published": dict(zip(fed, published.values(), strict=True)),
        "recorded": recorded,
        "all_recorded": recorded == dict(zip(fed, published.values(), strict=True)),
        "bags_complete": all((b / "metadata.yaml").exists() for b in bags),
        "recorder_exit_code": recorder.returncode,
        "recorder_cpu_percent_during_feed": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "recorder_cpu_percent_lifetime": round(100 * (usage.ru_utime + usage.ru_stime) / wall, 1),
        "recorder_max_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    print(json.dumps(result, indent=2))
    tmp.cleanup()
    return 0 if result["all_recorded"] and result["bags_complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
