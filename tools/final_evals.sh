#!/bin/bash
# the final evaluation runs; stream A and B in parallel
cd /work/main
export AMENT_PREFIX_PATH=$PWD/.venv
E=".venv/bin/python -m steering_agent.cli eval --threads 1 --quiet"
M=docs/measurements/suites
streamA() {
  $E --policy checkpoints/cnn_lstm.pt --policy checkpoints/cnn.pt --policy checkpoints/cnn_stack.pt \
     --policy hold:checkpoints/cnn_lstm.pt --policy hold:checkpoints/cnn.pt --policy hold:checkpoints/cnn_stack.pt \
     --policy runs/v1/cnn_lstm_v1.pt --policy lane-follower --policy expert \
     --suite memory --episodes 8 --route-length-m 400 --num-envs 8 --json $M/memory.json --report runs/report_memory > runs/eval_memory.log 2>&1
  $E --policy checkpoints/cnn_lstm.pt --policy checkpoints/cnn.pt --suite cameras --episodes 2 --route-length-m 1000 \
     --num-envs 2 --json $M/cameras.json > runs/eval_cameras.log 2>&1
}
streamB() {
  $E --policy checkpoints/cnn_lstm.pt --policy checkpoints/cnn.pt --policy checkpoints/cnn_stack.pt \
     --policy runs/v1/cnn_lstm_v1.pt --policy lane-follower --policy expert \
     --suite lane --suite world --suite highway --num-envs 8 --json $M/lane_world_highway.json --report runs/report_lwh > runs/eval_lwh.log 2>&1
  $E --policy checkpoints/cnn_lstm.pt --policy checkpoints/cnn.pt --policy runs/v1/cnn_lstm_v1.pt \
     --suite world --episodes 10 --route-length-m 1000 --num-envs 10 --json $M/world_20km.json > runs/eval_world20.log 2>&1
  $E --policy checkpoints/cnn_lstm.pt --policy checkpoints/cnn.pt --policy checkpoints/cnn_stack.pt \
     --suite lane --episodes 20 --route-length-m 1000 --num-envs 10 --json $M/lane_20km.json > runs/eval_lane20.log 2>&1
}
streamA & streamB & wait
echo ALL DONE
