"""Parameter declarations shared by the nodes: descriptors with ranges and choices, and
integers accepted where a float is declared (`max_bag_size_mb:=1024`, `-p rate_hz:=20`).

A node lists its parameters as ``{name: (default, descriptor)}`` and calls
`declare_all(node, PARAMETERS)`, which returns the values as a dict.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter


def string(description: str, choices: tuple[str, ...] = (), read_only: bool = True):
    """A string parameter; `choices` are listed in the description and checked."""
    extra = f" (one of: {', '.join(choices)})" if choices else ""
    d = ParameterDescriptor(description=description + extra, read_only=read_only)
    d.additional_constraints = f"one of: {', '.join(choices)}" if choices else ""
    return d


def floating(description: str, low: float, high: float, read_only: bool = True):
    """A float parameter in [low, high]."""
    return ParameterDescriptor(
        description=description,
        read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=low, to_value=high, step=0.0)],
    )


def integer(description: str, low: int, high: int, read_only: bool = True):
    """An integer parameter in [low, high]."""
    return ParameterDescriptor(
        description=description,
        read_only=read_only,
        integer_range=[IntegerRange(from_value=low, to_value=high, step=1)],
    )


def flag(description: str, read_only: bool = True):
    """A bool parameter."""
    return ParameterDescriptor(description=description, read_only=read_only)


def choices_of(descriptor: ParameterDescriptor) -> list[str]:
    """The allowed values of a `string(..., choices)` parameter ([] = any)."""
    text = descriptor.additional_constraints
    return text[len("one of: ") :].split(", ") if text.startswith("one of: ") else []


def _ints_as_floats(node, parameters: dict) -> None:
    # rclpy refuses an integer override (`-p rate_hz:=20`, YAML `1024`) for a parameter
    # declared as a double, and has no public hook before the declaration; the overrides
    # it read from the command line and files are in `_parameter_overrides` (Humble,
    # Jazzy and Kilted alike).
    overrides = getattr(node, "_parameter_overrides", None)
    if not isinstance(overrides, dict):
        return
    for name, (default, _) in parameters.items():
        given = overrides.get(name)
        if (
            isinstance(default, float)
            and given is not None
            and given.type_ == Parameter.Type.INTEGER
        ):
            overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(given.value))


def declare_all(node, parameters: dict[str, tuple[Any, ParameterDescriptor]]) -> dict:
    """Declare every parameter on `node`; their values by name.

    Raises:
        ValueError: a string parameter is not one of its choices (names the parameter).
        rclpy.exceptions.ParameterException: a value of the wrong type or out of range.
    """
    _ints_as_floats(node, parameters)
    values = {}
    for name, (default, descriptor) in parameters.items():
        values[name] = node.declare_parameter(name, default, descriptor).value
        allowed = choices_of(descriptor)
        if allowed and values[name] not in allowed:
            raise ValueError(
                f"parameter {name}={values[name]!r} is not one of: {', '.join(allowed)}"
            )
    return values
