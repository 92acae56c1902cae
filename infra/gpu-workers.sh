#!/usr/bin/env bash
# One Prefect worker per GPU on this node, each seeing only its own GPU and taking one flow run at
# a time:   infra/gpu-workers.sh POOL     (e.g. synthvision-local; Ctrl-C stops them all)
set -euo pipefail
pool=${1:?usage: gpu-workers.sh WORK_POOL}
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader)
[ -n "$gpus" ] || { echo "no GPU found by nvidia-smi" >&2; exit 1; }
trap 'kill 0' INT TERM EXIT
for gpu in $gpus; do
    CUDA_VISIBLE_DEVICES=$gpu prefect worker start --pool "$pool" --name "$(hostname)-gpu$gpu" --limit 1 &
done
wait
