# The README's two commands: `make demo` and `make test`. Both set up .venv first
# (tools/bootstrap.sh; idempotent) and need nothing else on the machine.
VENV ?= .venv
PY := $(VENV)/bin/python
# The ROS 2 wheels find their interfaces through the ament index in the venv.
export AMENT_PREFIX_PATH := $(abspath $(VENV))$(if $(AMENT_PREFIX_PATH),:$(AMENT_PREFIX_PATH))
export PYTHONUNBUFFERED := 1

.PHONY: setup test test-fast test-jazzy demo lint format clean

setup:
	@VENV=$(VENV) tools/bootstrap.sh

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

# The ROS tests against the ROS 2 Jazzy wheels, in a second venv (tools/jazzy_venv.sh;
# docs/ros_data.md says what it costs and what differs).
test-jazzy:
	@tools/jazzy_venv.sh
	AMENT_PREFIX_PATH=$(abspath .venv-jazzy) .venv-jazzy/bin/python -m pytest -m ros

# ends with the path of the report page (tables, charts, the episode's video)
demo: setup
	$(VENV)/bin/steering-agent drive --out runs/demo
	@test -f runs/demo/index.html && echo "report: $(abspath runs/demo/index.html)"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build runs *.egg-info
