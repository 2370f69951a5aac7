#!/usr/bin/env bash
# The package as a stranger gets it: `npm pack` of a fresh clone of the committed HEAD (its
# prepack script builds dist/), installed from the tarball into an empty project, then loaded
# there by name. Fails on any failed check. Usage: scripts/pack-check.sh (or npm run pack:check).
# Uncommitted changes are not in the clone, so not checked: commit first.
#
# In the empty project, tests/integration/programs/packed-package.mjs loads every entry of the
# tarball's package.json "exports" by import() and require(), checks class and error names in both
# builds, one AsyncLocalStorage for both, and the adapters; first without express and fastify
# (optional peers), then with them. Then `npx pg-tenant --help` and `--version`.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pg-tenant-pack-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
npm_flags=(--no-audit --no-fund --prefer-offline --loglevel=error)
fail() {
  echo "pack-check: FAIL: $*" >&2
  exit 1
}

head="$(git -C "$root" rev-parse HEAD)"
echo "== fresh clone of $head"
git clone --quiet --no-checkout "$root" "$work/repo"
git -C "$work/repo" checkout --quiet --detach "$head"
cd "$work/repo"
[ ! -e dist ] || fail "the clone has a dist/ before any build"

echo "== npm ci"
npm ci "${npm_flags[@]}" >"$work/npm-ci.log" 2>&1 || { cat "$work/npm-ci.log" >&2; fail "npm ci"; }

echo "== npm pack (prepack builds dist/)"
mkdir "$work/pack"
npm pack --pack-destination "$work/pack" >"$work/npm-pack.log" 2>&1 || { cat "$work/npm-pack.log" >&2; fail "npm pack"; }
tarballs=("$work"/pack/*.tgz)
[ "${#tarballs[@]}" -eq 1 ] && [ -f "${tarballs[0]}" ] || fail "npm pack made no single tarball"
tarball="${tarballs[0]}"

mkdir "$work/unpacked"
tar -xzf "$tarball" -C "$work/unpacked"
files="$(cd "$work/unpacked/package" && find . -type f | sed 's|^\./||' | sort)"
count="$(($(printf '%s\n' "$files" | wc -l)))"
# Portable sums (no GNU find -printf); $((...)) drops the padding BSD wc adds.
packed="$(($(wc -c <"$tarball")))"
unpacked="$(($(find "$work/unpacked/package" -type f -exec cat {} + | wc -c)))"
echo "$(basename "$tarball"): packed $packed bytes ($((packed / 1024)) kB), unpacked $unpacked bytes ($((unpacked / 1024)) kB), $count files"
printf '%s\n' "$files" | sed 's/^/  /'

grep -qx 'dist/index\.cjs' <<<"$files" || fail "no dist/ in the tarball"
! grep -E '\.map$' <<<"$files" || fail "source maps in the tarball (above)"
! grep -Ev '^(dist/|docs/[a-z-]+\.md$|README\.md$|CHANGELOG\.md$|LICENSE$|package\.json$)' <<<"$files" ||
  fail "files outside dist/ and the docs in the tarball (above)"
! grep -rl 'sourceMappingURL' "$work/unpacked/package" || fail "files above point at source maps"
# A path of the machine that built it (the clone, the repository) would be in a source map or in
# code that names its own file; none may ship.
for dir in "$work" "$root"; do
  ! grep -rlF "$dir" "$work/unpacked/package" || fail "the tarball's files above contain the path $dir"
done

echo "== empty project: npm install the tarball and pg (no express, no fastify)"
# The versions the repository is tested with: what its lock file installed in the clone.
version() { node -p "require('$work/repo/node_modules/$1/package.json').version"; }
pg_version="$(version pg)"
express_version="$(version express)"
fastify_version="$(version fastify)"
mkdir "$work/app"
cd "$work/app"
echo '{ "name": "pack-check-app", "private": true }' >package.json
npm install "${npm_flags[@]}" "$tarball" "pg@$pg_version" >"$work/npm-install.log" 2>&1 ||
  { cat "$work/npm-install.log" >&2; fail "npm install of the tarball"; }
cp "$work/repo/tests/integration/programs/packed-package.mjs" .
node packed-package.mjs frameworks=absent || fail "packed-package.mjs without express and fastify"

echo "== npx pg-tenant --help, --version"
# --no: never fetch a `pg-tenant` from the registry; it must be the installed bin.
help="$(npx --no -- pg-tenant --help)" || fail "npx pg-tenant --help exited $?"
grep -q '^Usage: pg-tenant <command>' <<<"$help" || fail "npx pg-tenant --help printed no usage: $help"
head -n 1 <<<"$help"
expected="$(node -p "require('$work/repo/package.json').version")"
printed="$(npx --no -- pg-tenant --version)" || fail "npx pg-tenant --version exited $?"
[ "$printed" = "$expected" ] ||
  fail "npx pg-tenant --version printed '$printed', expected $expected"
echo "version: $printed"

echo "== the same project with express@$express_version and fastify@$fastify_version"
npm install "${npm_flags[@]}" "express@$express_version" "fastify@$fastify_version" >"$work/npm-install.log" 2>&1 ||
  { cat "$work/npm-install.log" >&2; fail "npm install express fastify"; }
node packed-package.mjs frameworks=present || fail "packed-package.mjs with express and fastify"

echo "pack-check: ok ($(basename "$tarball"), packed $((packed / 1024)) kB, unpacked $((unpacked / 1024)) kB, $count files)"
