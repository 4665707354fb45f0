#!/usr/bin/env bash
# Side by side with the TypeScript engine (docs/benchmarks.md): the same
# shapes of trivial tasks on the TypeScript Smithers engine (npm
# `smithers-orchestrator`, under Bun) and on this engine's `smithers` CLI,
# each run a whole process timed from start to exit, on a fresh SQLite file.
#
#   benchmarks/side_by_side.sh [--repeat N] [--out FILE] [--filter TEXT]
#                              [--timeout SECONDS] [--ts-budget SECONDS]
#                              [--workdir DIR]
#
#   --repeat N       passes over the cases (default 3); medians are reported
#   --out FILE       results as JSON (default ./side-by-side.json)
#   --filter TEXT    only the cases whose name contains TEXT
#   --timeout S      a run taking longer is stopped and reported failed (default 300)
#   --ts-budget S    run the TypeScript engine's 10,000-task fan-out only when
#                    its 200 and 1,000 fan-outs predict at most S seconds (default 150)
#   --workdir DIR    where the databases go (default $TMPDIR or /tmp); removed after
#
# Environment:
#   SMITHERS_TS_DIR  the directory holding node_modules/smithers-orchestrator
#                    (default ${XDG_CACHE_HOME:-$HOME/.cache}/smithers-ts-bench)
#   BUN              the bun binary (default: bun on PATH, else $SMITHERS_TS_DIR/node_modules/.bin/bun)
#   SMITHERS_BIN     this engine's CLI (default build-release/apps/smithers/smithers)
#
# Without Bun or the package, it says how to install them and exits 0.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ts_src="$root/benchmarks/ts"
ts_dir="${SMITHERS_TS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/smithers-ts-bench}"

repeat=3
out="side-by-side.json"
filter=""
timeout_s=300
ts_budget=150
workbase="${TMPDIR:-/tmp}"

die() { echo "side_by_side: $*" >&2; exit 4; }
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) [ $# -ge 2 ] || die "--repeat needs a value"; repeat="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a value"; out="$2"; shift 2 ;;
    --filter) [ $# -ge 2 ] || die "--filter needs a value"; filter="$2"; shift 2 ;;
    --timeout) [ $# -ge 2 ] || die "--timeout needs a value"; timeout_s="$2"; shift 2 ;;
    --ts-budget) [ $# -ge 2 ] || die "--ts-budget needs a value"; ts_budget="$2"; shift 2 ;;
    --workdir) [ $# -ge 2 ] || die "--workdir needs a value"; workbase="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
for v in "$repeat" "$timeout_s" "$ts_budget"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "expected a positive integer, got '$v'"
done

# --- the TypeScript side: optional -------------------------------------------
bun="${BUN:-}"
if [ -z "$bun" ]; then
  if command -v bun >/dev/null 2>&1; then
    bun="$(command -v bun)"
  elif [ -x "$ts_dir/node_modules/.bin/bun" ]; then
    bun="$ts_dir/node_modules/.bin/bun"
  fi
fi
if [ -z "$bun" ] || ! "$bun" --version >/dev/null 2>&1 ||
   [ ! -f "$ts_dir/node_modules/smithers-orchestrator/package.json" ]; then
  echo "side_by_side: skipped, the TypeScript engine is not installed; to install it: mkdir -p '$ts_dir' && cp '$ts_src/package.json' '$ts_dir/' && (cd '$ts_dir' && npm install)  (or point SMITHERS_TS_DIR at an install of bun and smithers-orchestrator)"
  exit 0
fi
export SMITHERS_TS_DIR="$ts_dir"

# --- this engine ---------------------------------------------------------------
bin="${SMITHERS_BIN:-$root/build-release/apps/smithers/smithers}"
if [ ! -x "$bin" ]; then
  echo "side_by_side: no smithers binary at $bin (build it: ./dev bench, or set SMITHERS_BIN)" >&2
  exit 1
fi

bun_version="$("$bun" --version)"
ts_version="$("$bun" -e "console.log(require('$ts_dir/node_modules/smithers-orchestrator/package.json').version)")"
ours_version="$("$bin" --version 2>/dev/null | head -n 1)"

mkdir -p "$workbase" || die "cannot create $workbase"
work="$(mktemp -d "$workbase/smithers-side-by-side.XXXXXX")" || die "cannot create a directory in $workbase"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
runs="$work/runs.ndjson"
: > "$runs"

util() { "$bun" "$ts_src/util.ts" "$@"; }
now() { echo "${EPOCHREALTIME:-$(date +%s.%N)}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
# Single line, no quotes or backslashes: safe inside a JSON string.
# shellcheck disable=SC1003  # '\\' is tr's backslash, not an escaped quote
clean() { tr '\n\t"\\' '    ' | tr -s ' ' | cut -c1-300; }

# A run record: case engine pass ok wall engine error skipped.
record() {
  local wall="${5:-null}" eng="${6:-null}"
  printf '{"case":"%s","engine":"%s","pass":%s,"ok":%s,"wall_s":%s,"engine_s":%s,"error":"%s","skipped":"%s"}\n' \
    "$1" "$2" "$3" "$4" "${wall:-null}" "${eng:-null}" "${7:-}" "${8:-}" >> "$runs"
}

cases=(fanout/compute/200 fanout/compute/1000 fanout/compute/10000
       chain/compute/200 chain/compute/1000
       fanout/cmd/200 chain/cmd/200)
selected=()
for c in "${cases[@]}"; do
  if [ -z "$filter" ] || [[ "$c" == *"$filter"* ]]; then selected+=("$c"); fi
done
[ ${#selected[@]} -gt 0 ] || die "no case matches --filter '$filter' (cases: ${cases[*]})"

mkdir -p "$work/wf"
for c in "${selected[@]}"; do
  IFS=/ read -r shape kind n <<< "$c"
  util workflow "$shape" "$kind" "$n" > "$work/wf/$shape-$kind-$n.json" || die "cannot write the workflow for $c"
done

run_ts() {  # case pass
  local c="$1" pass="$2" shape kind n dir t0 t1 rc verdict
  IFS=/ read -r shape kind n <<< "$c"
  dir="$work/ts-$shape-$kind-$n-$pass"
  mkdir -p "$dir"
  t0="$(now)"
  (cd "$dir" && SMITHERS_LOG_LEVEL="${SMITHERS_LOG_LEVEL:-warn}" exec timeout -k 5 "$timeout_s" \
     "$bun" "$ts_src/shapes.ts" "$shape" "$kind" "$n" "$dir/ts.db" "$dir/result.json" \
     > "$dir/stdout" 2> "$dir/stderr")
  rc=$?
  t1="$(now)"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    verdict="failed timeout-after-${timeout_s}s"
  elif [ ! -s "$dir/result.json" ]; then
    verdict="failed exit-$rc-no-result: $(tail -n 3 "$dir/stderr" | clean)"
  else
    verdict="$(util check-ts "$n" "$rc" < "$dir/result.json")"
  fi
  if [[ "$verdict" == finished* ]]; then
    record "$c" ts "$pass" true "$(elapsed "$t0" "$t1")" "${verdict#finished }"
  else
    record "$c" ts "$pass" false "" "" "$(printf '%s' "${verdict#failed }" | clean)"
  fi
  rm -rf "$dir"
  echo "$verdict"
}

run_ours() {  # case pass
  local c="$1" pass="$2" shape kind n dir t0 t1 rc verdict
  IFS=/ read -r shape kind n <<< "$c"
  dir="$work/ours-$shape-$kind-$n-$pass"
  mkdir -p "$dir"
  t0="$(now)"
  (cd "$dir" && exec timeout -k 5 "$timeout_s" \
     "$bin" --db "$dir/smithers.db" run --run-id bench "$work/wf/$shape-$kind-$n.json" \
     > "$dir/stdout" 2> "$dir/stderr")
  rc=$?
  t1="$(now)"
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    verdict="failed timeout-after-${timeout_s}s"
  elif [ "$rc" -ne 0 ]; then
    verdict="failed exit-$rc: $( (head -n 1 "$dir/stdout"; tail -n 2 "$dir/stderr") | clean)"
  elif ! head -n 1 "$dir/stdout" | grep -qx 'run bench finished'; then
    verdict="failed unexpected-output: $(head -n 1 "$dir/stdout" | clean)"
  else
    verdict="$("$bin" --db "$dir/smithers.db" --format json inspect bench 2>&1 | util check-ours "$n")"
  fi
  if [[ "$verdict" == finished* ]]; then
    record "$c" ours "$pass" true "$(elapsed "$t0" "$t1")" "${verdict#finished }"
  else
    record "$c" ours "$pass" false "" "" "$(printf '%s' "${verdict#failed }" | clean)"
  fi
  rm -rf "$dir"
  echo "$verdict"
}

echo "side_by_side: TypeScript smithers-orchestrator $ts_version on Bun $bun_version vs $ours_version ($bin)"
echo "side_by_side: ${#selected[@]} cases, $repeat passes, databases in $work"

ts_large=""  # "", "run" or the reason the TypeScript 10,000-task fan-out is skipped
for pass in $(seq 1 "$repeat"); do
  for c in "${selected[@]}"; do
    ts_verdict=""
    if [ "$c" = fanout/compute/10000 ] && [ -z "$ts_large" ]; then
      t200="$(util median "$runs" fanout/compute/200 ts)"
      t1000="$(util median "$runs" fanout/compute/1000 ts)"
      ts_large=run
      if [ -z "$t200" ] || [ -z "$t1000" ]; then
        ts_large="no timed 200- and 1,000-task fan-outs to predict its time from (let --filter include them)"
      else
        predicted="$(util predict "$t200" "$t1000" 10000)"
        if [ "$predicted" -gt "$ts_budget" ]; then
          ts_large="predicted ${predicted} s per run from the 200- and 1,000-task fan-outs, over --ts-budget ${ts_budget} s"
        fi
      fi
      [ "$ts_large" = run ] || record "$c" ts "$pass" false "" "" "" "$ts_large"
    fi
    if [ "$c" = fanout/compute/10000 ] && [ "$ts_large" != run ]; then
      ts_verdict="skipped"
    else
      ts_verdict="$(run_ts "$c" "$pass")"
    fi
    ours_verdict="$(run_ours "$c" "$pass")"
    printf 'pass %s/%s  %-22s TS: %-24s ours: %s\n' "$pass" "$repeat" "$c" \
      "$(printf '%s' "$ts_verdict" | cut -c1-24)" "$(printf '%s' "$ours_verdict" | cut -c1-60)"
  done
done

meta="$work/meta.json"
printf '{"date":"%s","host":"%s","cpus":%s,"repeat":%s,"bun":"%s","smithers_orchestrator":"%s","ours":"%s","ours_bin":"%s","measured":"%s"}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(uname -sm)" "$(nproc 2>/dev/null || echo null)" "$repeat" \
  "$bun_version" "$ts_version" "$(printf '%s' "$ours_version" | clean)" "$(printf '%s' "$bin" | clean)" \
  "wall_s: the whole process, start to exit, median of the passes; engine_s: TS runWorkflow call to result, ours run created_ms to finished_ms" \
  > "$meta"
echo
util report "$runs" "$out" "$meta" || exit 1
echo
echo "side_by_side: wrote $out"
