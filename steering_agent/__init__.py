"""steering_agent: a CNN+LSTM driving agent that steers from a front camera.

Importing this package loads neither rclpy nor torch; the modules that need them do.
"""

__version__ = "0.1.0"
