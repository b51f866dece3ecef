#!/bin/bash
# The evaluation runs behind the README's tables (two streams side by side on 2 cores).
# Two earlier shipped CNN+LSTMs are the comparison, taken from git history (runs/ is not in
# git): cnn_lstm_r2 (before the DAgger rounds, commit 264f282) and cnn_lstm_r910 (the mean of
# DAgger rounds 9 and 10, shipped before round 12, commit 3dea5da).
set -e
cd "$(dirname "$0")/.."
mkdir -p runs/git
git show 264f282:checkpoints/cnn_lstm.pt > runs/git/cnn_lstm_r2.pt
git show 3dea5da:checkpoints/cnn_lstm.pt > runs/git/cnn_lstm_r910.pt
export AMENT_PREFIX_PATH=${AMENT_PREFIX_PATH:-$PWD/.venv}
E=".venv/bin/python -m steering_agent.cli eval --threads 1 --quiet"
M=docs/measurements/suites
L=checkpoints/cnn_lstm.pt; C=checkpoints/cnn.pt; S=checkpoints/cnn_stack.pt; P=runs/git/cnn_lstm_r2.pt; D=runs/git/cnn_lstm_r910.pt
streamA() {
  $E --policy $L --policy $C --policy $S --policy hold:$L --policy hold:$C --policy $P \
     --policy lane-follower --policy expert \
     --suite memory --episodes 8 --route-length-m 400 --num-envs 8 --json $M/memory.json --report runs/report_memory > runs/eval_memory.log 2>&1
  $E --policy $L --policy $C --suite cameras --episodes 2 --route-length-m 1000 \
     --num-envs 2 --json $M/cameras.json > runs/eval_cameras.log 2>&1
  # the shipped CNN+LSTM was chosen among DAgger candidates on world_20km's seeds:
  # the same suite on 10 other held-out seeds checks the choice
  $E --policy $L --policy $D --suite world --episodes 10 --seed 100 --route-length-m 1000 \
     --num-envs 10 --json $M/world_20km_seed100.json > runs/eval_world20_seed100.log 2>&1
  # a third set (rounds 5-6 were chosen without it; rounds 9-10 looked at all three)
  $E --policy $L --policy $D --suite world --episodes 10 --seed 200 --route-length-m 1000 \
     --num-envs 10 --json $M/world_20km_seed200.json > runs/eval_world20_seed200.log 2>&1
}
streamB() {
  $E --policy $L --policy $C --policy $S --policy $P --policy lane-follower --policy expert \
     --suite lane --suite world --suite highway --num-envs 8 --json $M/lane_world_highway.json --report runs/report_lwh > runs/eval_lwh.log 2>&1
  $E --policy $L --policy $D --policy $C --policy $P --policy lane-follower \
     --suite world --episodes 10 --route-length-m 1000 --num-envs 10 --json $M/world_20km.json > runs/eval_world20.log 2>&1
  $E --policy $L --policy $D --policy $C --policy $S --policy $P \
     --suite lane --episodes 20 --route-length-m 1000 --num-envs 10 --json $M/lane_20km.json > runs/eval_lane20.log 2>&1
  # a fourth set (rounds 9-10 were chosen without it; round 12 looked at all four)
  $E --policy $L --policy $D --suite world --episodes 10 --seed 300 --route-length-m 1000 \
     --num-envs 10 --json $M/world_20km_seed300.json > runs/eval_world20_seed300.log 2>&1
  # a fifth set, not looked at while choosing the checkpoint of round 12
  $E --policy $L --policy $D --suite world --episodes 10 --seed 400 --route-length-m 1000 \
     --num-envs 10 --json $M/world_20km_seed400.json > runs/eval_world20_seed400.log 2>&1
}
streamA & streamB & wait
echo ALL DONE
