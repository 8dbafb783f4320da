#!/usr/bin/env bash
# Many nodes: one process per GPU over the hosts of a hostfile ("node01 slots=8" per line). Each rank
# reads its node-local rank from OMPI_COMM_WORLD_LOCAL_RANK (MpiRuntime::local_rank) and takes that GPU.
#   launch/mpi/run_multinode.sh --hostfile hosts.txt --gpus-per-node 8 build/launch/coil train run.yaml
#   launch/mpi/run_multinode.sh --hostfile hosts.txt --gpus-per-node 8 --dry-run --dp 4 --tp 8
#
# NCCL environment notes (exported to every rank with -x; set them before calling this script):
#   NCCL_DEBUG=WARN (INFO to see the rings/trees and the transport chosen)
#   NCCL_SOCKET_IFNAME=<iface>   the interface for bootstrap (e.g. ib0 or eth0; not docker0 / lo)
#   NCCL_IB_HCA=mlx5             which InfiniBand adapters to use; NCCL_IB_DISABLE=1 forces TCP
#   NCCL_NET_GDR_LEVEL=PHB       GPUDirect RDMA distance; NCCL_P2P_LEVEL=NVL keeps P2P on NVLink
#   NCCL_NVLS_ENABLE=0           NVLink SHARP / multicast off: common.sh exports it (with
#                                TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1) and
#                                this script forwards them; never turn multicast on here
#   NCCL_ASYNC_ERROR_HANDLING=1  abort on a failed collective instead of hanging
# Keep tp inside a node (the default grid order tp,sp,dp with tp <= GPUs per node).
# The communicator is the run config's parallel.backend (auto: NCCL for CUDA runs; common.sh).
# Without ssh between the hosts, OMPI_MCA_plm_rsh_agent names the program that starts each host's
# daemon (bench/multi_gpu.sh part e uses a local stand-in to run two "nodes" on one machine).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/common.sh"

hostfile=""
gpn=""
dry=0
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --hostfile) hostfile="$2"; shift 2 ;;
    --gpus-per-node) gpn="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ -n "$hostfile" && -f "$hostfile" ]] || { echo "$0: --hostfile FILE is required (got '$hostfile')" >&2; exit 2; }
if [[ -z "$gpn" ]]; then
  gpn="$(nvidia-smi -L 2>/dev/null | wc -l || true)"
  [[ "$gpn" -gt 0 ]] || { echo "$0: --gpus-per-node not given and nvidia-smi found no GPU" >&2; exit 2; }
fi
nodes="$(grep -cv '^\s*\(#\|$\)' "$hostfile")"
np=$(( nodes * gpn ))

if [[ $dry -eq 1 ]]; then
  echo "$nodes nodes x $gpn GPUs = $np ranks"
  coil_dry_run "$np" "${args[@]}"
  exit $?
fi

# Open MPI's "isolated" launcher starts no daemon on another node; mpirun would only say "All nodes
# which are allocated for this job are already filled". Some machines preset it for one-node jobs.
if [[ "${OMPI_MCA_plm:-}" == isolated && $nodes -gt 1 ]]; then
  echo "$0: OMPI_MCA_plm=isolated is set in the environment: Open MPI will start no process on the other" \
       "$((nodes - 1)) node(s) of $hostfile. Unset it or set OMPI_MCA_plm=rsh (ssh to each node)." >&2
  exit 2
fi

mpi_opts=(--hostfile "$hostfile" -np "$np" --map-by "ppr:${gpn}:node" --bind-to none)
[[ "$(id -u)" == 0 ]] && mpi_opts+=(--allow-run-as-root)
envs=(OMP_NUM_THREADS)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"
for v in $(compgen -e | grep -E '^(NCCL_|CUDA_|COIL_)' || true); do envs+=("$v"); done
envs+=(TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS)
for v in "${envs[@]}"; do mpi_opts+=(-x "$v"); done
exec mpirun "${mpi_opts[@]}" "${args[@]}"
