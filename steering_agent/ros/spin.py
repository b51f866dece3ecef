"""Spinning a node until Ctrl-C or SIGTERM, the same way in every executable."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def spin_until_shutdown(node: Node) -> None:
    """Spin `node` until Ctrl-C or SIGTERM; a signal racing the executor is no error.

    A callback that raises is logged and the node spins on: one bad request (e.g. a
    lifecycle transition that Jazzy's rclpy raises RCLError for, where Kilted's refuses
    it) must not take the node, and the car's brakes, down with it."""
    while True:
        try:
            rclpy.spin(node)
            return
        except (KeyboardInterrupt, ExternalShutdownException):
            return
        except Exception as e:
            # rclpy's signal handler may shut the context down while the executor builds
            # its wait set (RCLError "context is not valid"): that is a shutdown.
            if not node.context.ok():
                return
            node.get_logger().error(f"a callback raised {type(e).__name__}: {e}; spinning on")


def run_node(
    name: str,
    make_node: Callable[[], Node],
    finish: Callable[[Node], None] | None = None,
    args: list[str] | None = None,
    user_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """The `main` of an executable: init, build the node, spin until Ctrl-C or SIGTERM,
    then `finish(node)` (summaries, closing files) and shut down. A configuration error
    (ValueError, a refused parameter, or one of `user_errors`) is one line on stderr and
    exit code 1; a clean stop is 0."""
    from rclpy.exceptions import ParameterException

    from steering_agent.common.heap import retain_frame_buffers

    retain_frame_buffers()  # before the participant's threads allocate (common/heap.py)
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        spin_until_shutdown(node)
    except KeyboardInterrupt:
        pass
    except (ValueError, ParameterException, *user_errors) as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            if finish is not None:
                finish(node)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
