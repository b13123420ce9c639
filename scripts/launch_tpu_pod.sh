#!/usr/bin/env bash
# Run jaxssl on every worker of a Cloud TPU VM pod slice (v4-32, v5p-64, ...): the same
# command on all hosts, each calling jax.distributed.initialize() with no arguments (on TPU
# VMs JAX finds the coordinator, the process count and its id from the TPU metadata).
#
#   bash scripts/launch_tpu_pod.sh TPU_NAME [--zone=ZONE] [--project=PROJECT] [--setup]
#        [--detach] [--dry_run] -- JAXSSL_MAIN_ARGS...
#
# Example (ResNet-50 SimCLR on a v4-32, data and workdir on GCS):
#   bash scripts/launch_tpu_pod.sh my-v4-32 --zone=us-central2-b --setup -- \
#     --config=configs/simclr_imagenet.py --workdir=gs://my-bucket/runs/simclr_r50 \
#     --config.data.data_dir=gs://my-bucket/tensorflow_datasets
# which runs, on every worker:
#   gcloud compute tpus tpu-vm ssh my-v4-32 --zone=us-central2-b --worker=all \
#     --command="cd jaxssl && python3 -m jaxssl.main --distributed --config=... --workdir=gs://..."
#
# --setup    first copies this checkout (its files as they are now, tracked or not, minus
#            what .gitignore ignores) to ~/jaxssl on every worker and installs it there
#            (pip install jax[tpu], pip install -e .[data,gcs]: tfds and the gs:// clients).
#            Without it the workers must already hold ~/jaxssl with jaxssl installed.
# A gs:// workdir is shared by all workers: every worker proves it can write it before
# touching the TPU (one-line error otherwise: check the VM service account's storage scope),
# process 0 writes the logs and JSON files, all write their checkpoint shards.
# --detach   run under nohup on the workers (log in ~/jaxssl/train.log), so that closing
#            this terminal does not stop the run; rerunning the same command resumes.
# --dry_run  print the gcloud commands instead of running them.
# Env: REPO_DIR (remote checkout, default jaxssl), PYTHON (remote, default python3),
#      JAX_TPU_EXTRA (default 'jax[tpu]').
# Preemption (spot / queued resources): the trainer saves a checkpoint on SIGTERM and exits
# 75; run the same command again on the new slice to resume from WORKDIR (the gs://
# checkpoint folder is the only state, so new hosts find the run).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 || "$1" == -* ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2
  exit 2
fi
TPU_NAME=$1; shift
GCLOUD_FLAGS=()
SETUP=0; DETACH=0; DRY_RUN=0
REPO_DIR=${REPO_DIR:-jaxssl}
PYTHON=${PYTHON:-python3}
JAX_TPU_EXTRA=${JAX_TPU_EXTRA:-jax[tpu]}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --zone=*|--project=*) GCLOUD_FLAGS+=("$1"); shift ;;
    --zone|--project) GCLOUD_FLAGS+=("$1=$2"); shift 2 ;;
    --setup) SETUP=1; shift ;;
    --detach) DETACH=1; shift ;;
    --dry_run) DRY_RUN=1; shift ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (put jaxssl.main's flags after --)" >&2; exit 2 ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "error: give jaxssl.main's flags after --, e.g. -- --config=configs/simclr_imagenet.py --workdir=gs://BUCKET/runs/NAME" >&2
  exit 2
fi

ssh_all() {  # run a shell command on every worker (print it with --dry_run)
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "gcloud compute tpus tpu-vm ssh $TPU_NAME ${GCLOUD_FLAGS[*]} --worker=all --command=\"$1\""
  else
    gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${GCLOUD_FLAGS[@]}" --worker=all --command="$1"
  fi
}

if [[ "$SETUP" == 1 ]]; then
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "gcloud compute tpus tpu-vm scp <tarball of this checkout> $TPU_NAME:jaxssl.tar.gz ${GCLOUD_FLAGS[*]} --worker=all"
  else
    TARBALL=$(mktemp -t jaxssl-XXXXXX.tar.gz)
    while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done \
      < <(git ls-files -z --cached --others --exclude-standard) | tar -czf "$TARBALL" --null -T -
    gcloud compute tpus tpu-vm scp "$TARBALL" "$TPU_NAME:jaxssl.tar.gz" "${GCLOUD_FLAGS[@]}" --worker=all
    rm -f "$TARBALL"
  fi
  ssh_all "mkdir -p $REPO_DIR && tar -xzf jaxssl.tar.gz -C $REPO_DIR && cd $REPO_DIR && $PYTHON -m pip install -q -U '$JAX_TPU_EXTRA' && $PYTHON -m pip install -q -e '.[data,gcs]'"
fi

MAIN_ARGS=$(printf '%q ' "$@")
MAIN_ARGS=${MAIN_ARGS% }
COMMAND="$PYTHON -m jaxssl.main --distributed $MAIN_ARGS"
if [[ "$DETACH" == 1 ]]; then
  COMMAND="nohup $COMMAND > train.log 2>&1 &"
fi
ssh_all "cd $REPO_DIR && $COMMAND"
