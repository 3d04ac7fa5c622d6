# Sourced by array.sbatch and torchrun.sbatch (from the repository root, where the job runs).
# sbatch copies a batch script to its spool folder, so what the scripts share lives here.

# The shard "K/N" of this array task: K = SLURM_ARRAY_TASK_ID, N = the array's size. N is SHARDS
# when set (needed when the task ids are not 0..N-1, e.g. to rerun tasks 3 and 7 of 16:
# SHARDS=16 sbatch --array=3,7 ...), else SLURM_ARRAY_TASK_COUNT (else SLURM_ARRAY_TASK_MAX + 1),
# which is N only when the ids are exactly 0..N-1: other arrays (0-15:2, 1-8, 0,1,5) are refused,
# since their tasks would not cover every run.
slurm_shard() {
  local k="${SLURM_ARRAY_TASK_ID:-}" n
  if ! [[ "$k" =~ ^[0-9]+$ ]]; then
    echo "error: not a job array task (SLURM_ARRAY_TASK_ID='$k'); submit with sbatch --array=0-<N-1>" >&2
    return 2
  fi
  if [ -n "${SHARDS:-}" ]; then
    n="$SHARDS"
  elif [[ "${SLURM_ARRAY_TASK_COUNT:-}" =~ ^[0-9]+$ ]]; then
    n="$SLURM_ARRAY_TASK_COUNT"
    if [ "${SLURM_ARRAY_TASK_MIN:-0}" != 0 ] || [ "${SLURM_ARRAY_TASK_MAX:-$((n - 1))}" != "$((n - 1))" ]; then
      echo "error: the array's task ids are not 0..$((n - 1)) (min ${SLURM_ARRAY_TASK_MIN:-?}, max" \
        "${SLURM_ARRAY_TASK_MAX:-?}, $n tasks); use --array=0-<N-1>, or set SHARDS=N" >&2
      return 2
    fi
  elif [[ "${SLURM_ARRAY_TASK_MAX:-}" =~ ^[0-9]+$ ]] && [ "${SLURM_ARRAY_TASK_MIN:-0}" = 0 ]; then
    n=$((SLURM_ARRAY_TASK_MAX + 1))
  else
    echo "error: cannot tell the array's size; set SHARDS=N" >&2
    return 2
  fi
  if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$k" -ge "$n" ]; then
    echo "error: task $k of an array of '$n' shards: need 0 <= task id < N" >&2
    return 2
  fi
  echo "$k/$n"
}

# GPUs for torchrun on this node: GPUS when set, else the job's (SLURM_GPUS_ON_NODE), else those
# in CUDA_VISIBLE_DEVICES, else those nvidia-smi lists. Fails when there are none.
slurm_gpus() {
  local n="${GPUS:-${SLURM_GPUS_ON_NODE:-}}"
  if [ -z "$n" ] && [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    n=$(tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -c .)
  fi
  if [ -z "$n" ] && command -v nvidia-smi > /dev/null; then
    n=$(nvidia-smi -L 2> /dev/null | grep -c '^GPU' || true)
  fi
  if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ]; then
    echo "error: no GPUs (GPUS='${GPUS:-}', SLURM_GPUS_ON_NODE='${SLURM_GPUS_ON_NODE:-}');" \
      "submit with --gres=gpu:G (or --gpus-per-node=G), or set GPUS" >&2
    return 2
  fi
  echo "$n"
}

# This job as scontrol names it: ARRAYJOB_TASK for an array task, else the job id.
slurm_job() {
  if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then
    echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
  else
    echo "${SLURM_JOB_ID:-}"
  fi
}

# Source ENV_SH (default scripts/env.sh: makes .venv on first use, puts it on PATH). The tasks of an
# array start together, and on a fresh checkout each would build .venv at once: a lock on the file
# lets one build it while the others wait, then find it made.
slurm_setup_env() {
  local env_sh="${ENV_SH:-scripts/env.sh}"
  if [ ! -f "$env_sh" ]; then
    echo "error: ENV_SH=$env_sh: no such file" >&2
    return 2
  fi
  if command -v flock > /dev/null && [ -w "$env_sh" ]; then
    exec 8<> "$env_sh"  # read-write: flock on NFS is a POSIX lock, which needs a writable descriptor
    flock 8
  fi
  # shellcheck source=/dev/null
  source "$env_sh"
  exec 8>&-
}

# Run "$@" in the background and wait for it, so that this shell takes signals while it runs:
#   USR1 (#SBATCH --signal=B:USR1@T: T seconds before the time limit): stop the command (SIGTERM),
#        then requeue this job; it starts again later, and the runner skips finished runs and resumes
#        the interrupted one from its last epoch checkpoint.
#   TERM (scancel; preemption, which SLURM requeues itself under --requeue): stop the command, exit.
# Returns the command's exit status.
_slurm_child=
slurm_run() {
  trap '_slurm_stop USR1' USR1  # before the command starts (a command's traps are its own)
  trap '_slurm_stop TERM' TERM
  "$@" &
  _slurm_child=$!
  local status=0
  wait "$_slurm_child" || status=$?
  trap - USR1 TERM
  return "$status"
}

_slurm_stop() {
  trap '' USR1 TERM
  echo "[slurm] $(date '+%F %T') SIG$1: stopping the run (a restarted job resumes it from its last checkpoint)"
  if [ -n "$_slurm_child" ]; then
    kill -TERM "$_slurm_child" 2> /dev/null || true
    wait "$_slurm_child" 2> /dev/null || true
  fi
  if [ "$1" = USR1 ]; then
    local job
    job="$(slurm_job)"
    if scontrol requeue "$job"; then
      echo "[slurm] requeued $job"
      exit 0
    fi
    echo "error: scontrol requeue $job failed" >&2
    exit 1
  fi
  exit 143
}
