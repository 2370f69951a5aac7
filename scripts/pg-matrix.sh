#!/usr/bin/env bash
# The pg version matrix: runs the integration tests that exercise pg-tenant's driver (the
# single-trip pipeline, named statements, transaction status, the pg client's events) against each
# pg version given, then puts back the pg of package-lock.json.
#
#   scripts/pg-matrix.sh floor 8.20.0 latest
#   PG_MATRIX_FILES="tests/integration/query.test.ts" scripts/pg-matrix.sh 8.9.0
#
# `floor` is the version peerDependencies.pg starts at (`^8.x.y` or `>=8.x.y <9`), so that CI and
# package.json cannot drift apart; `latest` is the newest pg on the registry.
# Each version is installed with `npm install --no-save`: package.json and package-lock.json are
# not touched. pg brings its own pg-pool, pg-protocol (and pg-types, ...) within its ranges; npm
# keeps the ones already installed when they satisfy those ranges, so an old pg runs here with the
# lock file's pg-pool and pg-protocol. The installed version is checked against the one asked for,
# and tests/integration/pg-version.test.ts (run with the others) checks it is at or above the floor
# of peerDependencies.pg.
#
# A version passes when vitest's JSON report says every test passed (not only its exit code). A
# version whose run hangs fails after PG_MATRIX_TIMEOUT seconds (default 300); the run's whole
# process group (vitest, its workers, the PostgreSQL and PgBouncer it started) is then killed.
# Exits non-zero if any version failed; prints a summary line per version.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
  echo "usage: scripts/pg-matrix.sh <pg version | floor | latest>... (e.g. floor 8.20.0 latest)" >&2
  exit 2
fi

# The test files whose outcome depends on pg's behaviour: what pg-tenant writes on pg's Connection
# and how it reads pg's Query, Client and pool events. The ORM, HTTP adapter, doctor and CLI tests
# reach pg only through these paths (or bring a pg of their own) and run in the main suite.
DEFAULT_FILES=(
  tests/integration/pg-version.test.ts
  tests/integration/query.test.ts
  tests/integration/pipeline.test.ts
  tests/integration/prepared-prefix.test.ts
  tests/integration/round-trips.test.ts
  tests/integration/pool-client.test.ts
  tests/integration/no-way-out.test.ts
  tests/integration/session-state.test.ts
  tests/integration/reset.test.ts
  tests/integration/scopes.test.ts
  tests/integration/isolation.test.ts
  tests/integration/lost-connection.test.ts
  tests/integration/async-context.test.ts
  tests/integration/verify-release.test.ts
  tests/integration/rls-violation.test.ts
)
if [ -n "${PG_MATRIX_FILES:-}" ]; then
  read -r -a FILES <<<"$PG_MATRIX_FILES"
else
  FILES=("${DEFAULT_FILES[@]}")
fi
TIMEOUT="${PG_MATRIX_TIMEOUT:-300}"

peer_floor() {
  node -e '
    const range = require("./package.json").peerDependencies.pg
    const m = /^\^(8\.\d+\.\d+)$/.exec(range) || /^>=\s*(8\.\d+\.\d+)\s+<\s*9(\.0\.0)?$/.exec(range)
    if (!m) { console.error(`pg-matrix: cannot read a floor from peerDependencies.pg "${range}"`); process.exit(1) }
    console.log(m[1])'
}
installed_pg() { node -p "require('./node_modules/pg/package.json').version" 2>/dev/null || echo none; }
# pg's own copy of a dependency if npm nested one under it, else the top-level one.
installed_of() {
  local file=node_modules/pg/node_modules/$1/package.json
  [ -f "$file" ] || file=node_modules/$1/package.json
  node -p "require('./$file').version" 2>/dev/null || echo none
}
locked_pg=$(node -p "require('./package-lock.json').packages['node_modules/pg'].version")

install_pg() {
  npm install --no-save --no-audit --no-fund --ignore-scripts --loglevel=error "pg@$1" >/dev/null
}

restore() {
  if [ "$(installed_pg)" != "$locked_pg" ]; then
    echo "pg-matrix: restoring pg $locked_pg (package-lock.json)"
    install_pg "$locked_pg" || echo "pg-matrix: could not restore pg $locked_pg; run npm ci" >&2
  fi
}

scratch=$(mktemp -d -t pg-matrix.XXXXXX)
report=$scratch/report.json
trap 'rm -rf "$scratch"; restore' EXIT

# Runs the files in a process group of their own, so that a hang can be ended completely.
run_files() {
  rm -f "$report"
  PG_MATRIX_PG="$1" setsid -w npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "${FILES[@]}" &
  local pid=$! waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge "$TIMEOUT" ]; then
      echo "pg-matrix: no end after ${TIMEOUT}s: killing the run (process group $pid)" >&2
      kill -TERM -- "-$pid" 2>/dev/null
      sleep 5
      kill -KILL -- "-$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      return 124
    fi
    sleep 1
    waited=$((waited + 1))
  done
  wait "$pid"
  local rc=$?
  # The exit code alone is not trusted (a dependency's exit hook once turned failures into 0).
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
    const ok = r.success && r.numFailedTests === 0 && r.numFailedTestSuites === 0 && r.numTotalTests > 0
    console.log(`pg-matrix: ${r.numPassedTests}/${r.numTotalTests} tests passed in ${r.testResults.length} files`)
    process.exit(ok ? 0 : 1)' "$report" 2>/dev/null || { [ "$rc" -ne 0 ] || rc=1; }
  return "$rc"
}

declare -a summary=()
failed=0
for wanted in "$@"; do
  started=$SECONDS
  if [ "$wanted" = floor ]; then
    wanted=$(peer_floor) || { summary+=("floor: FAIL (no floor in peerDependencies.pg)"); failed=1; continue; }
  fi
  printf '\n== pg %s\n' "$wanted"
  if ! install_pg "$wanted"; then
    summary+=("pg $wanted: FAIL (npm could not install it)")
    failed=1
    continue
  fi
  got=$(installed_pg)
  if [ "$wanted" != latest ] && [ "$wanted" != "$got" ]; then
    summary+=("pg $wanted: FAIL (npm installed $got)")
    failed=1
    continue
  fi
  echo "pg $got, pg-pool $(installed_of pg-pool), pg-protocol $(installed_of pg-protocol)"
  run_files "$got"
  rc=$?
  took=$((SECONDS - started))
  if [ "$rc" -eq 0 ]; then
    summary+=("pg $got: pass (${took}s)")
  elif [ "$rc" -eq 124 ]; then
    summary+=("pg $got: FAIL (hung: killed after ${TIMEOUT}s)")
    failed=1
  else
    summary+=("pg $got: FAIL (vitest exit $rc, ${took}s)")
    failed=1
  fi
done

printf '\n== pg matrix\n'
printf '%s\n' "${summary[@]}"
exit "$failed"
