"""The package itself: imports, installed layout, and a colcon build whose `agent` runs."""

from __future__ import annotations

import ast
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import REPO


def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("module", ["sim", "steering_agent"])
def test_import_pulls_in_neither_rclpy_nor_torch(module):
    out = _python(
        f"import sys, {module}; "
        "print(sorted(m for m in ('rclpy', 'torch', 'carla') if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_import_sim_registers_both_envs():
    out = _python(
        "import gymnasium, sim; ids = gymnasium.registry.keys(); "
        "print('SteeringAgent/Drive-v0' in ids, 'SteeringAgent/CarlaDrive-v0' in ids)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_package_xml_declares_the_runtime_dependencies():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "steering_agent"
    deps = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    assert {
        "rclpy",
        "sensor_msgs",
        "std_msgs",
        "geometry_msgs",
        "std_srvs",
        "rosgraph_msgs",
    } <= deps
    assert root.find("export/build_type").text == "ament_python"


def test_console_scripts_point_at_real_functions():
    import importlib
    import re

    text = (REPO / "setup.py").read_text()
    scripts = dict(re.findall(r'"([\w-]+) = ([\w.]+:\w+)"', text))
    assert {"steering-agent", "agent", "sim_bridge", "recorder"} <= scripts.keys()
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_cli_help_lists_every_verb(capsys):
    from steering_agent.cli import VERBS, main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", ["drive", "record", "train", "eval", "bench", "closed-loop"])
def test_every_verb_has_its_own_help(verb):
    out = subprocess.run(
        [sys.executable, "-m", "steering_agent.cli", verb, "--help"],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert f"steering-agent {verb}" in out.stdout


@pytest.mark.slow
@pytest.mark.ros
def test_colcon_build_and_run_agent_from_install_space(tmp_path, ros_domain, monkeypatch):
    # Default transports for the agent and this process's probe node alike: it is
    # destroyed below, and a LARGE_DATA (TCP) participant can hang when deleted.
    monkeypatch.delenv("FASTDDS_BUILTIN_TRANSPORTS", raising=False)
    colcon = shutil.which("colcon", path=os.path.dirname(sys.executable))
    if colcon is None:
        pytest.skip("colcon is not installed in this environment (make setup installs it)")
    build = subprocess.run(
        [colcon, "build", "--base-paths", str(REPO), "--build-base", str(tmp_path / "build"),
         "--install-base", str(tmp_path / "install"), "--event-handlers", "console_direct-"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    install = tmp_path / "install"
    exe = install / "steering_agent/lib/steering_agent/agent"
    share = install / "steering_agent/share/steering_agent"
    assert exe.exists()
    assert (share / "config/agent.yaml").exists()
    assert (share / "package.xml").exists()

    # Source the install space the way a ROS user does (colcon writes the POSIX sh variant
    # everywhere; the bash one needs colcon-bash), and run the installed executable.
    script = f"source {install}/local_setup.sh && exec {exe} --ros-args -r __node:=colcon_agent"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the install space, not the checkout, must provide the code
    proc = subprocess.Popen(
        ["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        from .ros_helpers import Probe

        # a context of its own: the default one may be held by an earlier test
        probe = Probe("colcon_probe")
        try:
            seen = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                probe.executor.spin_once(timeout_sec=0.2)
                if "colcon_agent" in probe.node.get_node_names():
                    seen = True
                    break
        finally:
            probe.close()
        assert seen, "the agent from the colcon install space never joined the ROS graph"
        # The node must come from the install space, not the source tree.
        out = subprocess.run(
            ["bash", "-c", f"source {install}/local_setup.sh && {sys.executable} -c "
             "'import steering_agent.ros.agent_node as m; print(m.__file__)'"],
            cwd=tmp_path, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert str(install) in out.stdout, out.stdout + out.stderr
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        log = proc.stdout.read()
    assert rc == 0, log[-3000:]


# ---- honest packaging: one version, declared dependencies, extras that say their name ----

_FIRST_PARTY = {"steering_agent", "sim", "tests"}
# Never runtime dependencies of the package (rosdep keys and ROS packages of test tools).
_TEST_ONLY = re.compile(
    r"^(python3-pytest(-.*)?|python3-coverage|python3-mock|launch_testing(_.*)?"
    r"|ament_(lint.*|copyright|flake8|pep257|xmllint|cmake_pytest|pytest))$"
)


def _setup_call() -> dict:
    """The literal keyword arguments of setup.py's `setup(...)` call (those that are literals)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            out = {}
            for kw in node.keywords:
                try:
                    out[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    out[kw.arg] = None  # computed (e.g. the version, read from package.xml)
            return out
    raise AssertionError("setup.py has no setup(...) call")


def _dist_name(requirement: str) -> str:
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_dists() -> dict[str, set[str]]:
    """Top-level module -> distributions (normalised) providing it, as installed here."""
    from importlib import metadata

    return {
        mod: {re.sub(r"[-_.]+", "-", d).lower() for d in dists}
        for mod, dists in metadata.packages_distributions().items()
    }


def _package_xml_deps() -> tuple[dict[str, list[ET.Element]], set[str]]:
    """({exec/depend name: elements}, {test_depend names}) of package.xml."""
    root = ET.parse(REPO / "package.xml").getroot()
    runtime: dict[str, list[ET.Element]] = {}
    for e in root:
        if e.tag in ("depend", "exec_depend"):
            runtime.setdefault(e.text.strip(), []).append(e)
    tests = {e.text.strip() for e in root if e.tag == "test_depend"}
    return runtime, tests


def _is_import_error_handler(handler: ast.ExceptHandler) -> bool:
    names = []
    if isinstance(handler.type, ast.Name):
        names = [handler.type.id]
    elif isinstance(handler.type, ast.Tuple):
        names = [getattr(e, "id", "") for e in handler.type.elts]
    return bool({"ImportError", "ModuleNotFoundError", "Exception"} & set(names))


def _imports(path):
    """(top-level module, line, kind) of every absolute import in a file; kind is
    "module" (runs on import of the file), "guarded" (module level, in a try whose
    except catches ImportError) or "lazy" (inside a function, or under TYPE_CHECKING)."""
    found = []

    def lazy(node) -> bool:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return True
        return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)

    def walk(nodes, kind):
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend((a.name.split(".")[0], node.lineno, kind) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0 and node.module:
                    found.append((node.module.split(".")[0], node.lineno, kind))
            elif lazy(node):
                walk(ast.iter_child_nodes(node), "lazy")
            elif (
                isinstance(node, ast.Try)
                and kind == "module"
                and any(_is_import_error_handler(h) for h in node.handlers)
            ):
                walk(node.body, "guarded")
                walk([*node.handlers, *node.orelse, *node.finalbody], kind)
            else:
                walk(ast.iter_child_nodes(node), kind)

    walk(ast.parse(path.read_text(), str(path)).body, "module")
    return found


def _third_party_imports(folders=("steering_agent", "sim", "launch")):
    out = []
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            for mod, line, kind in _imports(path):
                if mod in sys.stdlib_module_names or mod in _FIRST_PARTY:
                    continue
                out.append((mod, f"{path.relative_to(REPO)}:{line}", kind))
    return out


def test_one_version_number_everywhere():
    xml_version = ET.parse(REPO / "package.xml").getroot().findtext("version").strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", xml_version), xml_version
    # setup.py computes it (from package.xml), it does not write it down
    assert _setup_call()["version"] is None, "setup.py writes a version literal"
    assert xml_version not in (REPO / "steering_agent/__init__.py").read_text()
    setup_version = subprocess.run(
        [sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True, text=True
    )
    assert setup_version.returncode == 0, setup_version.stderr[-2000:]
    assert setup_version.stdout.strip().splitlines()[-1] == xml_version
    out = _python("import steering_agent; print(steering_agent.__version__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == xml_version


def test_every_third_party_import_is_declared():
    """Module-level imports: a hard dependency (install_requires) or ROS (package.xml).
    Lazy or guarded ones may also be an extra's. Nothing may be undeclared."""
    call = _setup_call()
    hard = {_dist_name(r) for r in call["install_requires"]}
    extras = {
        _dist_name(r) for name, reqs in call["extras_require"].items() if name != "test"
        for r in reqs
    }  # fmt: skip
    ros, _ = _package_xml_deps()
    module_dists = _module_dists()
    problems = []
    imports = _third_party_imports()
    assert imports, "no third-party imports found: the scan is broken"
    for mod, where, kind in imports:
        dists = module_dists.get(mod, set()) | {re.sub(r"[-_.]+", "-", mod).lower()}
        if mod in ros or dists & hard:
            continue
        if kind != "module" and dists & extras:
            continue
        if kind == "module" and dists & extras:
            problems.append(f"{where}: `{mod}` is an extra's but imported at module level")
        else:
            problems.append(f"{where}: `{mod}` is in neither install_requires nor package.xml")
    assert not problems, "\n".join(problems)


def test_every_ros_import_is_a_runtime_dependency_in_package_xml():
    call = _setup_call()
    pip = {_dist_name(r) for reqs in [call["install_requires"], *call["extras_require"].values()]
           for r in reqs}  # fmt: skip
    module_dists = _module_dists()
    ros, _ = _package_xml_deps()
    ros_imports = {
        mod
        for mod, _, _ in _third_party_imports()
        if not (module_dists.get(mod, set()) | {mod.replace("_", "-")}) & pip
    }
    assert {"rclpy", "sensor_msgs", "launch_ros"} <= ros_imports  # the scan sees them
    missing = sorted(ros_imports - ros.keys())
    assert not missing, f"imported but not declared in package.xml: {missing}"
    # carla_msgs is optional: declared only under a condition, so rosdep skips it by default
    for e in ros.get("carla_msgs", []):
        assert e.get("condition"), "carla_msgs must be conditional (it is not in rosdistro)"


def test_package_xml_has_no_test_only_runtime_dependency():
    ros, tests = _package_xml_deps()
    assert "python3-pytest" in tests
    bad = sorted(name for name in ros if name in tests or _TEST_ONLY.match(name))
    assert not bad, f"test-only packages declared as runtime dependencies: {bad}"


def test_extras_in_the_code_are_setup_py_extras():
    from steering_agent.common.extras import EXTRAS

    call = _setup_call()
    assert set(EXTRAS) == set(call["extras_require"]) - {"test"}
    module_dists = _module_dists()
    for extra, modules in EXTRAS.items():
        dists = {_dist_name(r) for r in call["extras_require"][extra]}
        for mod in modules:
            provided = module_dists.get(mod, set()) | {mod}
            assert provided & dists, f"extra {extra!r} does not install `{mod}` ({dists})"


def _blocking(*modules: str) -> str:
    """Python code that makes `modules` uninstalled for this process."""
    return "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)


def test_train_logdir_without_tensorboard_fails_before_any_work(tmp_path):
    code = _blocking("tensorboard") + (
        "import time; t = time.perf_counter()\n"
        "from steering_agent.cli import main\n"
        f"rc = main(['train', '--data', {str(tmp_path / 'no-such-data')!r}, '--out', "
        f"{str(tmp_path / 'm.pt')!r}, '--logdir', {str(tmp_path / 'tb')!r}])\n"
        "print('rc', rc)\n"
    )
    out = _python(code)
    assert out.stdout.split()[-2:] == ["rc", "2"], out.stdout + out.stderr
    assert 'pip install "steering_agent[tensorboard]"' in out.stderr
    assert "no usable episodes" not in out.stderr  # stopped before loading the data
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_train_without_logdir_needs_no_tensorboard(tmp_path):
    code = _blocking("tensorboard") + (
        "import numpy as np\n"
        "from steering_agent.training import TrainConfig, train\n"
        "from steering_agent.policy.preprocess import PreprocessConfig\n"
        "class E:\n"
        "    def __init__(s, n):\n"
        "        s.name = f'e{n}'; s.images = np.zeros((12, 66, 200, 3), np.uint8)\n"
        "        s.steer = np.zeros(12, np.float32); s.speed = np.full(12, 5, np.float32)\n"
        "        s.stamps = np.arange(12) * 0.05\n"
        "cfg = TrainConfig(epochs=1, seq_len=4, batch=2)\n"
        f"r = train([E(i) for i in range(3)], cfg, {str(tmp_path / 'm.pt')!r}, progress=False)\n"
        "print('ok', 'tensorboard' in sys.modules and sys.modules['tensorboard'] is not None)\n"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["ok", "False"]


def test_report_without_matplotlib_skips_the_plots_and_says_so(tmp_path):
    code = _blocking("matplotlib") + (
        "from steering_agent.evaluation import report\n"
        "print(report.plots_notice())\n"
        "doc = {'policies': {}, 'settings': {'seeds': [1000000], 'route_length_m': 10.0,\n"
        "       'width': 200, 'height': 66, 'frame_drop': 0.0, 'image_noise': 0.0,\n"
        "       'brightness': 0.0, 'control_delay': 0}}\n"
        f"paths = report.write_report({str(tmp_path)!r}, doc, [])\n"
        "print(sorted(p.name for p in paths))\n"
        "try:\n"
        "    report.plot_runs(None, [])\n"
        "except ImportError as e:\n"
        "    print('plot_runs:', e)\n"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("plots (") and 'pip install "steering_agent[plots]"' in lines[0]
    assert lines[1] == "['index.html', 'results.json', 'results.md']"  # the page needs none
    assert "steering_agent[plots]" in lines[2]
    assert not list(tmp_path.glob("*.png"))


def test_export_onnx_without_onnx_names_the_extra(tmp_path):
    code = _blocking("onnx", "onnxruntime") + (
        "from steering_agent.cli import main\n"
        f"print('rc', main(['export-onnx', '--checkpoint', 'nope.pt', '--out', "
        f"{str(tmp_path / 'm.onnx')!r}]))\n"
    )
    out = _python(code)
    assert out.stdout.split()[-2:] == ["rc", "2"], out.stdout + out.stderr
    assert 'pip install "steering_agent[onnx]"' in out.stderr
    assert "onnx and onnxruntime" in out.stderr  # both named, before the checkpoint is read
    assert not (tmp_path / "m.onnx").exists()


def test_no_extra_is_loaded_by_the_verbs_modules():
    """Importing every verb's module (what `steering-agent VERB --help` does) loads none of
    the optional packages."""
    out = _python(
        "import importlib, sys\n"
        "from steering_agent.cli import VERBS\n"
        "for module, _ in VERBS.values():\n"
        "    if module != 'steering_agent.ros.closed_loop':\n"
        "        importlib.import_module(module)\n"
        "print(sorted(m for m in ('matplotlib', 'tensorboard', 'onnx', 'onnxruntime', 'carla')\n"
        "             if m in sys.modules))\n"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
