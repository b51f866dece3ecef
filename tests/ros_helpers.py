"""Shared helpers for tests that run ROS 2 nodes as processes and talk to them over DDS."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

_domains = itertools.count()


def unique_domain() -> int:
    """A ROS_DOMAIN_ID for one test module: from the pid, so parallel runs do not cross-talk."""
    return 1 + (os.getpid() * 7 + next(_domains)) % 100  # 1..100: safe on every OS


def set_domain(domain: int) -> str | None:
    """Set ROS_DOMAIN_ID for this process and its children; returns the old value."""
    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    return old


def restore_domain(old: str | None) -> None:
    if old is None:
        os.environ.pop("ROS_DOMAIN_ID", None)
    else:
        os.environ["ROS_DOMAIN_ID"] = old


def random_checkpoint(path: Path, seed: int = 0) -> Path:
    """A small untrained cnn_lstm checkpoint (steers arbitrarily, but runs the real code)."""
    import torch

    from steering_agent.policy.checkpoint import save_checkpoint
    from steering_agent.policy.model import ModelConfig, SteeringNet
    from steering_agent.policy.preprocess import PreprocessConfig

    torch.manual_seed(seed)
    cfg = ModelConfig(feature_dim=32, hidden_dim=16)
    prov = {"torch_version": str(torch.__version__), "target_speed_mps": 6.0}
    return save_checkpoint(path, SteeringNet(cfg), cfg, PreprocessConfig(), prov)


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def time_msg(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class Probe:
    """An in-process node in its own rclpy context: publishes and records, spins on demand."""

    def __init__(self, name: str = "probe") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.context = rclpy.Context()
        rclpy.init(
            context=self.context, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO
        )
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}

    def record(self, msg_type, topic: str, qos=None) -> list:
        """Keep every message of `topic` in `self.received[topic]` (also returned)."""
        from rclpy.qos import QoSProfile

        store = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, store.append, qos or QoSProfile(depth=100))
        return store

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Spin until `predicate()` holds (True) or `timeout_s` passes (False)."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.05)
        return True

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def close(self) -> None:
        from steering_agent.ros.dds import keep_until_exit

        self.executor.shutdown()
        # Not destroyed: deleting a participant can hang (dds.KEPT_UNTIL_EXIT).
        keep_until_exit(self.node, self.context)


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
