"""The agent as a managed node (`lifecycle:=true`), driven through its lifecycle services
(lifecycle_msgs/srv/ChangeState, GetState) from another process: unconfigured and silent
at start; configure loads the policy and starts /diagnostics (inactive); activate
answers frames; deactivate brakes once and then publishes nothing; cleanup frees;
configure + activate again drives again. The speed comes from nav_msgs/Odometry
(`speed_source: odometry`, as for CARLA's native ROS 2)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ros_helpers import Probe, log_text, stamp_ns, time_msg

pytestmark = [pytest.mark.ros, pytest.mark.slow]

W, H = 64, 48
ODOMETRY = "/carla/ego_vehicle/odometry"


class Managed:
    def __init__(self, tmp, checkpoint) -> None:
        from carla_msgs.msg import CarlaEgoVehicleControl
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image

        from steering_agent.interfaces import topics
        from steering_agent.ros.closed_loop import start_node

        self.log = tmp / "agent.log"
        params = {"checkpoint": str(checkpoint), "control_type": "carla", "lifecycle": True,
                  "speed_source": "odometry", "odometry_topic": ODOMETRY,
                  "target_speed_mps": 2.0, "watchdog_timeout_s": 10.0}  # fmt: skip
        self.proc = start_node("agent", params, self.log)
        self.probe = Probe("lifecycle_probe")
        node = self.probe.node
        self.got = self.probe.record(CarlaEgoVehicleControl, topics.CONTROL)
        self.diagnostics = self.probe.record(DiagnosticArray, "/diagnostics")
        self.pub = node.create_publisher(Image, topics.IMAGE, QoSProfile(depth=1))
        self.odom = node.create_publisher(Odometry, ODOMETRY, QoSProfile(depth=1))
        self.next_ns = 50_000_000
        self._clients = {}

    def call(self, srv_type, name: str, request, timeout_s: float = 30.0):
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.probe.node.create_client(srv_type, name)
        assert self.probe.spin_until(client.service_is_ready, 60.0), log_text(self.log)
        future = client.call_async(request)
        assert self.probe.spin_until(future.done, timeout_s), log_text(self.log)
        return future.result()

    def get_state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, "/agent/get_state", GetState.Request()).current_state.label

    def change(self, transition: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition.id = getattr(Transition, f"TRANSITION_{transition.upper()}")
        return self.call(ChangeState, "/agent/change_state", request).success

    def send(self, speed_mps: float | None = None) -> int:
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import Image

        from steering_agent.data.imageconv import fill_image_msg

        if speed_mps is not None:
            odom = Odometry()
            odom.twist.twist.linear.x, odom.twist.twist.linear.y = speed_mps * 0.6, speed_mps * 0.8
            self.odom.publish(odom)
            self.probe.spin_for(0.05)
        ns, self.next_ns = self.next_ns, self.next_ns + 50_000_000
        rgb = np.random.default_rng(ns % 97).integers(0, 256, (H, W, 3), dtype=np.uint8)
        msg = fill_image_msg(Image(), rgb, "bgra8")
        msg.header.stamp = time_msg(ns)
        self.last_frame = msg
        self.pub.publish(msg)
        self.probe.spin_for(0.05)
        return ns

    def drive(self, speed_mps: float | None = None):
        """A frame and its answer; re-sent (the same stamp: the same answer) if the
        best-effort frame was lost while the agent's reader was matching."""
        ns = self.send(speed_mps)
        for _ in range(3):
            reply = self.reply_to(ns, 3.0)
            if reply is not None:
                return reply
            self.pub.publish(self.last_frame)
        return self.reply_to(ns, 3.0)

    def reply_to(self, ns: int, timeout_s: float = 10.0):
        found = []

        def has():
            found[:] = [m for m in self.got if stamp_ns(m.header.stamp) == ns]
            return bool(found)

        self.probe.spin_until(has, timeout_s)
        return found[0] if found else None

    def state_in_diagnostics(self, state: str, after: int, timeout_s: float = 5.0) -> dict | None:
        found = []

        def match():
            for array in self.diagnostics[after:]:
                for s in array.status:
                    values = {kv.key: kv.value for kv in s.values}
                    if s.name == "steering_agent: agent" and values.get("node state") == state:
                        found.append(dict(values, message=s.message))
                        return True
            return False

        self.probe.spin_until(match, timeout_s)
        return found[0] if found else None

    def close(self) -> None:
        from steering_agent.ros.closed_loop import stop_process

        stop_process(self.proc)
        self.probe.close()


@pytest.fixture(scope="module")
def managed(domain, checkpoint, tmp_path_factory):
    m = Managed(tmp_path_factory.mktemp("lifecycle"), checkpoint)
    try:
        yield m
    finally:
        m.close()


def test_the_transitions_through_the_lifecycle_services(managed):
    m = managed
    assert m.get_state() == "unconfigured", log_text(m.log)
    assert "loaded" not in log_text(m.log)  # configure loads the checkpoint, not the start
    # configure: policy loaded, /diagnostics up, but no subscription yet
    assert m.change("configure") and m.get_state() == "inactive"
    assert "loaded" in log_text(m.log)
    inactive = m.state_in_diagnostics("inactive", 0)
    assert inactive is not None and "inactive" in inactive["message"], log_text(m.log)
    assert m.pub.get_subscription_count() == 0
    # activate: frames answered; the odometry's speed (10 m/s, far above the 2 m/s
    # target) makes the speed controller brake
    assert m.change("activate") and m.get_state() == "active"
    assert m.probe.spin_until(lambda: m.pub.get_subscription_count() > 0, 10.0)
    assert m.probe.spin_until(lambda: m.odom.get_subscription_count() > 0, 10.0)
    reply = m.drive()
    assert reply is not None and reply.header.frame_id == "", log_text(m.log)
    fast = [m.drive(speed_mps=10.0) for _ in range(3)]
    assert fast[-1] is not None and fast[-1].throttle == 0.0 and fast[-1].brake > 0.0, fast[-1]
    n_diag = len(m.diagnostics)
    assert m.state_in_diagnostics("active", n_diag) is not None
    # deactivate: exactly one brake, then nothing for frames
    n = len(m.got)
    assert m.change("deactivate") and m.get_state() == "inactive"
    assert m.probe.spin_until(lambda: len(m.got) > n, 5.0)
    m.probe.spin_for(0.5)
    assert [(c.header.frame_id, c.brake) for c in m.got[n:]] == [("deactivated", 1.0)]
    assert m.probe.spin_until(lambda: m.pub.get_subscription_count() == 0, 10.0)
    m.send()
    m.probe.spin_for(0.5)
    assert len(m.got) == n + 1
    # cleanup: freed, no diagnostics any more
    assert m.change("cleanup") and m.get_state() == "unconfigured"
    assert "cleaned up: policy freed" in log_text(m.log)
    m.probe.spin_for(1.5)  # a report in flight may still arrive
    n_diag = len(m.diagnostics)
    m.probe.spin_for(1.5)
    assert len(m.diagnostics) == n_diag
    # and back to driving
    assert m.change("configure") and m.change("activate") and m.get_state() == "active"
    assert m.probe.spin_until(lambda: m.pub.get_subscription_count() > 0, 10.0)
    again = m.drive()
    assert again is not None and again.header.frame_id == "", log_text(m.log)


def test_an_invalid_transition_is_refused(managed):
    state = managed.get_state()
    assert not managed.change("create" if state != "unconfigured" else "activate")
    assert managed.get_state() == state
