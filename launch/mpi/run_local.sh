#!/usr/bin/env bash
# One node: run a coil program on N local processes with mpirun. Binds nothing (the program picks its
# GPU from the local rank); adds --allow-run-as-root when run as root (containers) and --oversubscribe
# when N exceeds the cores. Everything after the options goes to the program unchanged.
#   launch/mpi/run_local.sh -np 4 build/launch/coil train configs/run.yaml --dp 2 --tp 2
#   launch/mpi/run_local.sh -np 4 --dry-run --dp 2 --tp 2      # print the process grid, run nothing
# CUDA runs use NCCL (parallel.backend auto) with one rank per GPU; to put several ranks on one GPU
# add --set parallel.backend=mpi (see common.sh). NVLink multicast is kept off (common.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"

np=1
dry=0
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -np|-n|--np) np="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

if [[ $dry -eq 1 ]]; then
  coil_dry_run "$np" "${args[@]}"
  exit $?
fi
[[ ${#args[@]} -gt 0 ]] || { echo "usage: $0 -np N [--dry-run] PROGRAM [ARGS...]" >&2; exit 2; }

mpi_opts=(--bind-to none -np "$np")
[[ "$(id -u)" == 0 ]] && mpi_opts+=(--allow-run-as-root)
(( np > $(nproc) )) && mpi_opts+=(--oversubscribe)
# one thread per rank unless told otherwise: N ranks x all cores of OpenMP would oversubscribe
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
for v in "${COIL_NVLS_VARS[@]}"; do mpi_opts+=(-x "$v"); done
exec mpirun "${mpi_opts[@]}" -x OMP_NUM_THREADS "${args[@]}"
