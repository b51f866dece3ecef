"""The `agent` as a managed (lifecycle) node, for a lifecycle manager such as nav2's:
`ros2 run steering_agent agent --ros-args -p lifecycle:=true` (or the launch files'
`lifecycle:=true`). It starts unconfigured and exposes the standard lifecycle services
(`/agent/change_state`, `/agent/get_state`, ... : lifecycle_msgs).

- configure: load the checkpoint, build the calibration (the mount from the parameters
  or /tf), start /diagnostics; a missing checkpoint or tf2_ros fails the transition
  (the node stays unconfigured and says why);
- activate: subscribe to the camera, speed, override and camera_info, publish commands,
  run the watchdog; the recurrent state starts afresh;
- deactivate: one full brake command (header.frame_id `deactivated` where the message
  has a header), then nothing is published and nothing is subscribed;
- cleanup: the policy, the calibration and the publishers are freed;
- shutdown: from active, deactivate first (so the car gets its brake).
Parameters that can be set while running (`target_speed_mps`, ...) can be set in any
state.
"""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from steering_agent.ros.agent_core import NODE_NAME, AgentCore


class ManagedAgentNode(AgentCore, LifecycleNode):
    """The agent node under a lifecycle manager (module doc)."""

    def __init__(self, **kwargs) -> None:
        LifecycleNode.__init__(self, NODE_NAME, **kwargs)
        self._refuse_invalid_transitions()
        self._declare()
        self.get_logger().info("managed node: unconfigured, waiting for configure")

    def _refuse_invalid_transitions(self) -> None:
        """Answer a transition the current state does not have with success=false.

        Kilted's rclpy does; Jazzy's raises RCLError in the ChangeState callback, which
        leaves the caller without an answer (and, unhandled, ends the process)."""
        service = getattr(self, "_service_change_state", None)
        if service is None:
            return
        inner = service.callback

        def change_state(request, response):
            try:
                return inner(request, response)
            except Exception as e:  # rclpy's RCLError: no such transition from here
                t = request.transition
                self.get_logger().warning(f"transition {t.id} {t.label!r} refused: {e}")
                response.success = False
                return response

        service.callback = change_state

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self._configure()
        except (FileNotFoundError, ValueError) as e:
            self.get_logger().error(f"configure failed: {e}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info("configured")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._activate()
        self.get_logger().info("activated")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._deactivate()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._cleanup()
        self.get_logger().info("cleaned up: policy freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        if self.state == "active":
            self._deactivate()
        if self.state == "inactive":
            self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in state {state.label}: cleaning up")
        if self.state == "active":
            self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS
