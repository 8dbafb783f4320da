# Shared by the launch scripts: the NVLink-multicast switches and the --dry-run grid print. Sourced,
# not run.
#
# Communicator (the run config's parallel.backend): auto (default) trains with NCCL when
# train.device is cuda, coil was built with NCCL and there is more than one rank (MPI when a node
# has more ranks than GPUs), else with MPI;
# nccl needs one rank per GPU (rank r of a node takes GPU r; two ranks on one GPU fail at start,
# naming parallel.backend mpi); mpi stages CUDA tensors through host memory, so ranks may share a
# GPU (tests, debugging). The start banner of `coil train` names the backend in use.

# NVLink multicast (NVLS / symmetric-memory multicast) stays off: some fabrics lend GPUs that must
# never call cuMulticastCreate. The launchers export these and forward them to every rank.
export NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}"
export TORCH_SYMM_MEM_DISABLE_MULTICAST="${TORCH_SYMM_MEM_DISABLE_MULTICAST:-1}"
export NVSHMEM_DISABLE_NVLS="${NVSHMEM_DISABLE_NVLS:-1}"
COIL_NVLS_VARS=(NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS)

# coil_grid_dryrun is found through $COIL_GRID_DRYRUN, then $COIL_BUILD_DIR/parallel, then build*/ dirs.
coil_find_dryrun() {
  if [[ -n "${COIL_GRID_DRYRUN:-}" ]]; then echo "$COIL_GRID_DRYRUN"; return; fi
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  local c
  for c in "${COIL_BUILD_DIR:-$root/build}/parallel/coil_grid_dryrun" "$root"/build*/parallel/coil_grid_dryrun; do
    if [[ -x "$c" ]]; then echo "$c"; return; fi
  done
  echo "coil: coil_grid_dryrun not found; build it (ninja coil_grid_dryrun) or set COIL_GRID_DRYRUN" >&2
  return 1
}

# coil_dry_run NP ARGS...: print the grid that --dp/--tp/--sp/--order among ARGS give on NP ranks.
coil_dry_run() {
  local np="$1"; shift
  local grid=() a
  while [[ $# -gt 0 ]]; do
    a="$1"
    case "$a" in
      --dp|--tp|--sp|--order) grid+=("$a" "$2"); shift 2 ;;
      --dp=*|--tp=*|--sp=*|--order=*) grid+=("${a%%=*}" "${a#*=}"); shift ;;
      *) shift ;;
    esac
  done
  local tool
  tool="$(coil_find_dryrun)" || return 1
  "$tool" "${grid[@]}" --world "$np"
}
