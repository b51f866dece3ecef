"""`steering-agent VERB ...`: one thin command per verb, each a module with
`add_arguments(parser)` and `run(args) -> int`, imported only when used.

A user's mistake never ends in a traceback: a bad option value stops the parser, and
the user-facing errors a verb raises (`steering_agent.common.cli_args.user_errors`:
unwritable outputs, unreadable checkpoints, missing files or extras, no CARLA server)
are printed as one line, exit code 2. Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from steering_agent.common.cli_args import one_line, user_errors

VERBS: dict[str, tuple[str, str]] = {
    "drive": ("steering_agent.drive", "drive one closed-loop episode and summarise it"),
    "record": ("steering_agent.data.record_verb", "record expert drives to rosbag2 (MCAP)"),
    "train": ("steering_agent.train", "train a CNN+LSTM or CNN from recorded bags"),
    "eval": ("steering_agent.evaluation.evaluate", "closed-loop evaluation on held-out seeds"),
    "bench": ("steering_agent.bench", "latency and throughput benchmarks"),
    "closed-loop": ("steering_agent.ros.closed_loop", "sim_bridge + agent over DDS"),
    "export-onnx": ("steering_agent.policy.onnx_export", "export a checkpoint to ONNX"),
    "sim-preview": ("steering_agent.preview", "save a picture of frames from several seeds"),
    "recover": ("steering_agent.data.bagio", "make a bag of a killed recorder readable"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line: the option, the problem, where to read more."""

    def error(self, message: str):
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: {text} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="steering-agent", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if verb in sys.argv[1:2]:  # import only the module whose options we need
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in VERBS:
        verb = argv[0]
        parser = _Parser(prog=f"steering-agent {verb}", description=VERBS[verb][1])
        module = importlib.import_module(VERBS[verb][0])
        module.add_arguments(parser)
        args = parser.parse_args(argv[1:])
        # the command as given, for the result files that record how they were made
        args._command_line = shlex.join(["steering-agent", *argv])
        try:
            return int(module.run(args) or 0)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except user_errors() as e:  # evaluated when raised: the classes loaded by then
            print(f"steering-agent {verb}: {one_line(e)}", file=sys.stderr)
            return 2
    build_parser().parse_args(argv)  # prints usage / help and exits
    return 2


def entry() -> None:
    """The `steering-agent` command: `main`, then exit.

    Where the command kept ROS objects alive (`dds.KEPT_UNTIL_EXIT`), it exits
    with `dds.exit_without_destructors` (os._exit after flushing its output), so
    Fast DDS never runs the participant destructor that can hang.
    """
    code = main()
    dds = sys.modules.get("steering_agent.ros.dds")
    if dds is not None and dds.KEPT_UNTIL_EXIT:
        dds.exit_without_destructors(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
