#!/usr/bin/env bash
# Launch jaxssl on several processes: one per host (all its GPUs) or one per GPU.
#
# Cluster mode (default): run this script once per process -- by srun, mpirun, or by hand on
# each host -- with the same arguments. Every process calls jax.distributed.initialize()
# (python -m jaxssl.main --distributed) with
#   JAX_COORDINATOR_ADDRESS  host:port of process 0          (else: first host of SLURM_NODELIST)
#   JAX_NUM_PROCESSES        number of processes             (else: SLURM_NTASKS)
#   JAX_PROCESS_ID           this process, 0..N-1            (else: SLURM_PROCID)
# Port: JAX_COORDINATOR_PORT (default 12355) when the address is derived from SLURM.
#
#   # two hosts, all 8 GPUs of each in one process (run on host A, then on host B with ID 1):
#   JAX_COORDINATOR_ADDRESS=hostA:12355 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \
#     bash scripts/launch_multigpu.sh --config=configs/simclr_imagenet.py --workdir=/nfs/runs/r50
#
# Local mode: --local N starts N processes on this machine with a localhost coordinator and
# waits for them (output prefixed [pK]). With --cpu each process gets JAX_PLATFORMS=cpu,
# JAX_NUM_CPU_DEVICES=--cpu_devices (default 1) and gloo CPU collectives: a multi-process
# test on any laptop. Without --cpu, process K sees only GPU K (CUDA_VISIBLE_DEVICES=K).
#
#   bash scripts/launch_multigpu.sh --local 2 --cpu --config=configs/simclr_digits.py \
#     --workdir=/tmp/mp --config.train.num_steps=5 --config.eval.enabled=False
#
# Ctrl-C in local mode: each process saves its current step and exits; the script exits 130
# (rerun the same command to resume). A second Ctrl-C kills them at once.
#
# Every other argument goes to `python -m jaxssl.main` unchanged. The python is the one jaxssl
# is installed in: $PYTHON if set, else the active virtual/conda environment's, else this
# checkout's .venv (what scripts/quickstart.sh and scripts/test.sh create), else python, else
# python3; one that lacks jaxssl's dependencies stops the script with a one-line error.
# The global batch (train.batch_size) is split over all processes; the trainer logs the mesh,
# the process count and the per-process batch at start. The workdir must be on a filesystem
# all processes share (NFS, GCS via gs://...).
#
# SLURM example (sbatch scripts/launch_multigpu.sh is not enough: srun starts the tasks):
#   #!/bin/bash
#   #SBATCH --job-name=simclr-r50
#   #SBATCH --nodes=4
#   #SBATCH --ntasks-per-node=1          # one process per host, all its GPUs ...
#   #SBATCH --gpus-per-node=8
#   #SBATCH --cpus-per-task=64
#   #SBATCH --time=48:00:00
#   # ... or --ntasks-per-node=8 --gpus-per-task=1 for one process per GPU.
#   srun bash scripts/launch_multigpu.sh --config=configs/simclr_imagenet.py \
#     --workdir=/nfs/runs/simclr_r50 --config.data.data_dir=/nfs/tensorflow_datasets
#   # Preemption: SLURM sends SIGTERM; the trainer checkpoints and exits 75. Requeue with
#   #   #SBATCH --requeue --signal=TERM@120  and the same command resumes.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCAL=0
CPU=0
CPU_DEVICES=1
PORT=${JAX_COORDINATOR_PORT:-}
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --local) LOCAL=$2; shift 2 ;;
    --local=*) LOCAL=${1#*=}; shift ;;
    --cpu) CPU=1; shift ;;
    --cpu_devices) CPU_DEVICES=$2; shift 2 ;;
    --cpu_devices=*) CPU_DEVICES=${1#*=}; shift ;;
    --port) PORT=$2; shift 2 ;;
    --port=*) PORT=${1#*=}; shift ;;
    -h|--help) sed -n '2,/^set -euo pipefail/{/^set -euo/!p}' "$0"; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then PYTHON=$VIRTUAL_ENV/bin/python
  elif [[ -n "${CONDA_PREFIX:-}" && -x "$CONDA_PREFIX/bin/python" ]]; then PYTHON=$CONDA_PREFIX/bin/python
  elif [[ -x .venv/bin/python ]]; then PYTHON=$PWD/.venv/bin/python
  elif command -v python > /dev/null; then PYTHON=python
  else PYTHON=python3
  fi
fi
if ! "$PYTHON" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("absl", "jax", "flax", "ml_collections")))' 2> /dev/null; then
  echo "error: $PYTHON lacks jaxssl's dependencies (absl, jax, flax, ml_collections); run" \
       "bash scripts/quickstart.sh (it creates .venv here) or set PYTHON=/path/to/the/python jaxssl is installed in" >&2
  exit 2
fi

if ! [[ "$LOCAL" =~ ^[0-9]+$ ]]; then
  echo "error: --local $LOCAL must be a number of processes" >&2; exit 2
fi

# ------------------------------------------------------------------------- local mode
if [[ "$LOCAL" -gt 0 ]]; then
  if [[ -z "$PORT" ]]; then  # a free port on this machine
    PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  PIDS=()
  INTERRUPTS=0
  stop_all() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  }
  # Ctrl-C: every process finishes its step, saves it and exits (the run resumes with the same
  # command); a second Ctrl-C kills them at once (the last completed checkpoint stays valid).
  on_interrupt() {
    INTERRUPTS=$((INTERRUPTS + 1))
    if [[ "$INTERRUPTS" == 1 ]]; then
      echo "launch_multigpu: Ctrl-C: the processes save the current step and exit (Ctrl-C again to stop at once)" >&2
      stop_all
    else
      for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    fi
  }
  trap on_interrupt INT
  trap 'stop_all; wait; exit 143' TERM
  echo "launch_multigpu: $LOCAL local processes, coordinator 127.0.0.1:$PORT$([[ $CPU == 1 ]] && echo ", CPU ($CPU_DEVICES device(s) each)")"
  for ((i = 0; i < LOCAL; i++)); do
    (
      export JAX_COORDINATOR_ADDRESS="127.0.0.1:$PORT" JAX_NUM_PROCESSES="$LOCAL" JAX_PROCESS_ID="$i"
      if [[ "$CPU" == 1 ]]; then
        export JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES="$CPU_DEVICES" JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo
        export CUDA_VISIBLE_DEVICES=""
      else
        export CUDA_VISIBLE_DEVICES="$i"
      fi
      exec "$PYTHON" -m jaxssl.main --distributed "${ARGS[@]}"
    ) > >(sed -u "s/^/[p$i] /") 2>&1 &
    PIDS+=($!)
  done
  STATUS=0
  for i in "${!PIDS[@]}"; do
    while true; do  # a trapped Ctrl-C interrupts `wait` (code > 128) while the process runs on
      code=0
      wait "${PIDS[$i]}" || code=$?
      if [[ "$code" -gt 128 ]] && kill -0 "${PIDS[$i]}" 2>/dev/null; then continue; fi
      break
    done
    if [[ "$code" != 0 ]]; then
      echo "launch_multigpu: process $i exited with code $code" >&2
      [[ "$STATUS" == 0 ]] && STATUS=$code
      stop_all  # the others would wait forever on a collective with a dead peer
    fi
  done
  if [[ "$INTERRUPTS" -gt 0 ]]; then exit 130; fi
  exit "$STATUS"
fi

# ------------------------------------------------------------------------- cluster mode
if [[ -z "${JAX_PROCESS_ID:-}" && -n "${SLURM_PROCID:-}" ]]; then
  export JAX_PROCESS_ID="$SLURM_PROCID"
fi
if [[ -z "${JAX_NUM_PROCESSES:-}" && -n "${SLURM_NTASKS:-}" ]]; then
  export JAX_NUM_PROCESSES="$SLURM_NTASKS"
fi
if [[ -z "${JAX_COORDINATOR_ADDRESS:-}" && -n "${SLURM_NODELIST:-${SLURM_JOB_NODELIST:-}}" ]]; then
  NODELIST=${SLURM_NODELIST:-$SLURM_JOB_NODELIST}
  if command -v scontrol > /dev/null; then
    FIRST=$(scontrol show hostnames "$NODELIST" | head -n 1)
  else  # "node[03-05,07],gpu1" -> node03 (first range of the first group)
    FIRST=$(echo "$NODELIST" | sed -E 's/^([^[,]*)\[([0-9]+).*/\1\2/; s/,.*//')
  fi
  export JAX_COORDINATOR_ADDRESS="$FIRST:${PORT:-12355}"
fi
for var in JAX_COORDINATOR_ADDRESS JAX_NUM_PROCESSES JAX_PROCESS_ID; do
  if [[ -z "${!var:-}" ]]; then
    echo "error: $var is not set (and no SLURM_* variables to derive it from). Set" \
         "JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID for each" \
         "process, run under srun, or use --local N on one machine." >&2
    exit 2
  fi
done
echo "launch_multigpu: process $JAX_PROCESS_ID of $JAX_NUM_PROCESSES, coordinator $JAX_COORDINATOR_ADDRESS"
exec "$PYTHON" -m jaxssl.main --distributed "${ARGS[@]}"
