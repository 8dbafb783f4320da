# Shared by the launch scripts: the --dry-run grid print. Sourced, not run.
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
