#!/bin/sh
# Fails when the committed src/gen differs from what `npm run generate` makes
# of the protos now: CI's guard against a proto edit without regeneration.
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
node_modules/.bin/buf generate --output "$out"
if ! diff -r src/gen "$out/src/gen"; then
  echo "src/gen is stale: run \`npm run generate\` in clients/node and commit the result" >&2
  exit 1
fi
