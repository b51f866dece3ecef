"""Spinning a node until Ctrl-C or SIGTERM, the same way in every executable."""

from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def spin_until_shutdown(node: Node) -> None:
    """Spin `node` until Ctrl-C or SIGTERM; a signal racing the executor is no error."""
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # rclpy's signal handler may shut the context down while the executor builds
        # its wait set (RCLError "context is not valid"): that is a shutdown, not a crash.
        if node.context.ok():
            raise
