"""run_node's spin loop: a callback that raises is logged and the node spins on."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros


def test_a_raising_callback_does_not_stop_the_node():
    from steering_agent.ros.spin import spin_until_shutdown

    rclpy.init()  # the default context, as run_node's
    context = rclpy.get_default_context()
    node = rclpy.create_node("spin_test")
    calls = []
    errors = []
    node.get_logger().error = errors.append  # what the loop reports

    def tick():
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError(f"bad request {len(calls)}")
        if len(calls) == 5:
            context.try_shutdown()

    node.create_timer(0.01, tick)
    try:
        spin_until_shutdown(node)
    finally:
        node.destroy_node()
        context.try_shutdown()
    assert len(calls) >= 5  # it went on after both errors
    assert len(errors) == 2 and "bad request 1" in errors[0] and "spinning on" in errors[0]
