#!/usr/bin/env bash
# smelt verify over a Slurm job array: N array tasks each run one shard
# (`--shard K/N`, K = $SLURM_ARRAY_TASK_ID, N = $SLURM_ARRAY_TASK_COUNT) and write
# OUT/part-K.json; a merge job that starts when every task has succeeded
# (`--dependency=afterok`) writes OUT/verify.json and OUT/verify.txt, the single run's
# report (`smelt verify … --budget 0` with the same options), bit for bit but for the
# wall-clock `seconds`.
#
#   scripts/slurm/verify-array.sh submit N OUT -- VERIFY-ARGS…   # on the login node
#   scripts/slurm/verify-array.sh local  N OUT -- VERIFY-ARGS…   # the same commands, here,
#                                                               # one after another (no Slurm)
# e.g.
#   scripts/slurm/verify-array.sh submit 16 runs/dw -- examples/sgd.opt \
#       --problem examples/problems/double_well.prob --paths 4194304 --etas 2^-3,2^-4,2^-5
#
# VERIFY-ARGS are `smelt verify`'s (no --shard, --format, --budget: a shard runs the grid
# as given). OUT must be on a file system the compute nodes share. The smelt binary is
# $SMELT (default: `smelt` on the PATH); each task's threads are $SLURM_CPUS_PER_TASK.
# `task` and `merge` are what the jobs run; they are not meant to be called by hand.
#
# The defaults below apply to every job the script submits; override them on the sbatch
# line or edit them (the array's size is set by `submit` from N).
#SBATCH --job-name=smelt-verify
#SBATCH --cpus-per-task=4
#SBATCH --time=01:00:00
set -euo pipefail

SMELT="${SMELT:-smelt}"
mode="${1:-}"

usage() {
  sed -n '2,21p' "$0" >&2
  exit 2
}

# OUT and VERIFY-ARGS from `N OUT -- ARGS…` (submit, local) or `OUT -- ARGS…` (task).
parse() {
  out="$1"
  shift
  [ "${1:-}" = "--" ] || usage
  shift
  args=("$@")
}

case "$mode" in
  submit | local)
    shift
    n="${1:-}"
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || usage
    shift
    parse "$@"
    mkdir -p "$out"
    rm -f "$out"/part-*.json
    if [ "$mode" = submit ]; then
      script="$(realpath "$0")"
      job=$(sbatch --parsable --array="1-$n" --output="$out/slurm-%A_%a.log" \
        "$script" task "$out" -- "${args[@]}")
      job="${job%%;*}"
      merge=$(sbatch --parsable --dependency="afterok:$job" --cpus-per-task=1 \
        --output="$out/slurm-merge-%j.log" "$script" merge "$out")
      echo "submitted array job $job (shards 1-$n) and merge job $merge; the report: $out/verify.txt, $out/verify.json"
    else
      for k in $(seq 1 "$n"); do
        SLURM_ARRAY_TASK_ID="$k" SLURM_ARRAY_TASK_COUNT="$n" "$0" task "$out" -- "${args[@]}"
      done
      "$0" merge "$out"
    fi
    ;;
  task)
    shift
    parse "$@"
    : "${SLURM_ARRAY_TASK_ID:?not in a Slurm array task}" "${SLURM_ARRAY_TASK_COUNT:?}"
    k="$SLURM_ARRAY_TASK_ID"
    threads=()
    [ -n "${SLURM_CPUS_PER_TASK:-}" ] && threads=(--threads "$SLURM_CPUS_PER_TASK")
    # Written aside and renamed: a part on disk is always whole.
    "$SMELT" verify "${args[@]}" "${threads[@]}" --shard "$k/$SLURM_ARRAY_TASK_COUNT" -q \
      > "$out/part-$k.json.tmp"
    mv "$out/part-$k.json.tmp" "$out/part-$k.json"
    ;;
  merge)
    out="${2:?}"
    status=0
    "$SMELT" merge "$out"/part-*.json --format json > "$out/verify.json" || status=$?
    # Exit 3: a verdict contradicts its order (a result, as for smelt verify).
    [ "$status" = 0 ] || [ "$status" = 3 ] || exit "$status"
    "$SMELT" merge "$out"/part-*.json > "$out/verify.txt" || true
    exit "$status"
    ;;
  *)
    usage
    ;;
esac
