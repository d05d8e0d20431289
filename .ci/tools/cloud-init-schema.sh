#!/usr/bin/env bash
# Validate #cloud-config files with cloud-init's own schema validator, offline.
#
#   .ci/tools/cloud-init-schema.sh FILE...
#
# Runs `cloud-init schema --config-file FILE` once per file (it takes one file per call) and prints
# one line per file: "ok FILE" or "FAIL FILE" followed by cloud-init's errors. Deprecation notices
# (exit 0 from cloud-init) are printed as "deprecated FILE: ..." and fail only with
# CLOUD_INIT_SCHEMA_STRICT=1. Needs no root, network or cloud-init state: installing Debian's
# package is enough (.ci/run does: apt-get install -y --no-install-recommends cloud-init).
# A file must begin with "#cloud-config"; MIME multipart, gzip and "## template: jinja" user data
# are not accepted by this validator.
# Exit: 0 all valid, 1 any file invalid, 2 usage or cloud-init missing.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 FILE..." >&2
  exit 2
fi
if ! command -v cloud-init >/dev/null 2>&1; then
  echo "cloud-init-schema.sh: cloud-init is not installed (apt-get install -y --no-install-recommends cloud-init)" >&2
  exit 2
fi

strict=${CLOUD_INIT_SCHEMA_STRICT:-0}
failed=0
for file in "$@"; do
  if [ ! -r "$file" ]; then
    echo "FAIL $file: cannot read" >&2
    failed=1
    continue
  fi
  rc=0
  out=$(cloud-init schema --config-file "$file" 2>&1) || rc=$?
  # cloud-init 22.4 prints an empty "Cloud config schema deprecations: " header on errors.
  deprecations=$(printf '%s\n' "$out" | sed -n 's/^Cloud config schema deprecations: *//p' | grep -v '^$' || true)
  if [ "$rc" -ne 0 ]; then
    echo "FAIL $file"
    printf '%s\n' "$out" | grep -v -e '^Cloud config schema deprecations: *$' -e '^Error:$' | sed 's/^/  /'
    failed=1
  elif [ -n "$deprecations" ]; then
    echo "deprecated $file: $deprecations"
    [ "$strict" = 1 ] && failed=1
  else
    echo "ok $file"
  fi
done
exit "$failed"
