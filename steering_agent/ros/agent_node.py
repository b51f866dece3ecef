"""The `agent` node: front-camera frames in, vehicle control commands out.

`ros2 run steering_agent agent --ros-args --params-file config/agent.yaml`
(`-p lifecycle:=true`: the managed node of steering_agent.ros.lifecycle instead, which
waits for configure and activate; plain start, driving at once, is the default).

The node converts messages and calls the agent core (`steering_agent.agent.DrivingAgent`),
which owns the per-frame rules: one command per frame stamped with the frame's stamp, the
same answer for a re-sent frame, a brake after `max_failures` unusable frames in a row,
and the watchdog (on wall time, also under `use_sim_time`) that brakes while no frame
gives a driving command. The camera subscription keeps only the newest frame (depth 1),
so a slow step drops frames instead of building a queue. Raw images are taken serialized
and their pixels read in place (steering_agent.ros.image_input: one copy per frame, the
middleware's). Control message types (CarlaEgoVehicleControl, Twist,
AckermannDriveStamped) and their conventions: steering_agent.ros.control_msgs. What the
node does step by step: steering_agent.ros.agent_core; its inputs (frames, speed source,
camera mount from parameters or /tf): steering_agent.ros.agent_frames.

For the integrator:

- `/diagnostics` (diagnostic_msgs/DiagnosticArray), once a second on wall time: one
  status "steering_agent: agent" (hardware_id: the node's name), OK / WARN (braking, no
  frames yet, many frames dropped) / ERROR (no policy), with the frame rate, the frame
  drop, the policy's step time p50/p99, the watchdog and override states and the
  calibration as key-values. The content is `steering_agent.ros.diagnostics.HealthMonitor`'s
  (no ROS; tested in-process); the frame callback only counts.
- manual override: while `manual_override_topic` (std_msgs/Bool, reliable, transient
  local, depth 1, as the CARLA ROS bridge subscribes to it) is true, the node publishes
  nothing, no drive commands and no watchdog brakes, but keeps stepping the network on
  the frames, so on release it drives from a state that saw the road (no cold start);
  the release re-arms the watchdog (`DrivingAgent.set_override`).
- `target_speed_mps`, `watchdog_timeout_s` and `error_log_period_s` can be set while the
  node runs (`ros2 param set agent target_speed_mps 5.0`), within the ranges of their
  descriptors. An integer (`... target_speed_mps 5`) is taken as a float where rclpy
  has pre-set parameter callbacks (Iron and newer: Jazzy, Kilted); Humble's rclpy refuses
  it before any node callback runs ("Wrong parameter type"), so there pass 5.0.
"""

from __future__ import annotations

import sys

from rclpy.node import Node

from steering_agent.ros.agent_core import (  # noqa: F401  (names used by tests and tools)
    DEACTIVATE_FRAME_ID,
    DIAGNOSTICS_NAME,
    DIAGNOSTICS_TOPIC,
    NODE_NAME,
    WATCHDOG_FRAME_ID,
    AgentCore,
)
from steering_agent.ros.agent_params import PARAMETERS  # noqa: F401
from steering_agent.ros.spin import run_node


class SteeringAgentNode(AgentCore, Node):
    """The plain node: configured and active from the start."""

    def __init__(self, **kwargs) -> None:
        Node.__init__(self, NODE_NAME, **kwargs)
        self._declare()
        self._configure()
        self._activate()


def lifecycle_requested(context=None) -> bool:
    """Whether the `lifecycle` parameter of the node to start is true (from `-p`, a
    parameter file, remaps and wildcards alike: read from a short-lived node of the same
    name that exposes nothing)."""
    from rclpy.parameter import Parameter

    probe = Node(NODE_NAME, context=context, start_parameter_services=False, enable_rosout=False)
    try:
        given = getattr(probe, "_parameter_overrides", {}).get("lifecycle")
    finally:
        probe.destroy_node()
    if given is None:
        return False
    if given.type_ != Parameter.Type.BOOL:
        raise ValueError(f"parameter lifecycle={given.value!r} is not a bool (true or false)")
    return bool(given.value)


def make_node():
    """The plain node, or the managed one where `lifecycle:=true`."""
    if lifecycle_requested():
        from steering_agent.ros.lifecycle import ManagedAgentNode

        return ManagedAgentNode()
    return SteeringAgentNode()


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run steering_agent agent`; exit code 0 on Ctrl-C/SIGTERM."""
    return run_node("agent", make_node, AgentCore.write_summary, args, (FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
