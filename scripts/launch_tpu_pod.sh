#!/usr/bin/env bash
# Runs `rejax train` on every worker of a Cloud TPU pod slice. jax.distributed finds the other workers
# by itself on TPU VMs, so every worker runs the same command.
#
#   scripts/launch_tpu_pod.sh TPU_NAME ZONE configs/qwen3_8b.py:v5p-32 gs://bucket/runs/qwen3-8b \
#       --config.data.path=gs://bucket/data/reason-embed
#
# The repo must be at ~/rejax on every worker with `make install` done (or run this script's
# SETUP once: it clones and installs on all workers). The workers share nothing but a bucket: give the
# workdir and the data as gs:// URLs (a local path would be each worker's own disk). Checkpoints, metrics,
# config, TensorBoard events and the export go to the bucket; each worker's disk keeps only a staging cache
# of the base model (~/.cache/rejax/staged; 16.4 GB for Qwen3-8B in bf16). See docs/pods.md.
#
# A maintenance event or a spot reclaim sends SIGTERM: every worker finishes the step in flight, saves a
# checkpoint at a step all agree on and exits with status 75, its last line in ~/rejax-train.log being
# "rejax train: preempted (SIGTERM to process N): saved checkpoint STEP; run the same command to resume". Once
# the TPU is back (recreated, for spot/preemptible TPUs: then with SETUP=1), run the same command again: it
# resumes from that checkpoint. After a crash (status 1), the same: it resumes from the latest checkpoint.
set -euo pipefail
if [[ $# -lt 4 ]]; then
  echo "usage: $0 TPU_NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2
  exit 2
fi
TPU_NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4
shift 4
OVERRIDES=$(printf ' %q' "$@")
REPO=${REJAX_REPO:-https://github.com/rejax/rejax.git}
if [[ ${SETUP:-0} == 1 ]]; then
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command \
    "test -d ~/rejax || git clone $REPO ~/rejax; cd ~/rejax && make install && .venv/bin/pip install -q 'jax[tpu]'"
fi
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command \
  "set -o pipefail; cd ~/rejax && .venv/bin/rejax train --config $CONFIG --workdir $WORKDIR$OVERRIDES 2>&1 | tee -a ~/rejax-train.log"
