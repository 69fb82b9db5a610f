#!/usr/bin/env bash
# Regenerates the committed Go stubs (clients/go/switchboardv1) from the proto.
#
#   clients/go/generate.sh          rewrite clients/go/switchboardv1
#   clients/go/generate.sh --check  exit 1 if the committed stubs are stale
#
# The plugins are the versions pinned by the `tool` directives in go.mod, and
# protoc is the one bundled with the venv's locked grpcio-tools, so the output
# (including its version header) is the same on every machine. Set
# SWITCHBOARD_PYTHON to use another interpreter that has grpc_tools.
set -euo pipefail

check=0
case "${1:-}" in
  "") ;;
  --check) check=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${SWITCHBOARD_PYTHON:-$repo/.venv/bin/python}"
module="switchboard.dev/clients/go"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# Built rather than `go tool`-run because protoc needs a plugin executable path.
(cd "$here" && go build -o "$scratch/bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go \
  && go build -o "$scratch/bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc)

mkdir -p "$scratch/out"
(cd "$repo" && "$python" -m grpc_tools.protoc -I proto \
  --plugin=protoc-gen-go="$scratch/bin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$scratch/bin/protoc-gen-go-grpc" \
  --go_out="$scratch/out" --go_opt=module="$module" \
  --go-grpc_out="$scratch/out" --go-grpc_opt=module="$module" \
  proto/switchboard/v1/gateway.proto)

if [ "$check" = 1 ]; then
  if ! diff -ru "$here/switchboardv1" "$scratch/out/switchboardv1"; then
    echo "clients/go/switchboardv1 is stale: run clients/go/generate.sh" >&2
    exit 1
  fi
  echo "clients/go/switchboardv1 is up to date"
  exit 0
fi

# Swap in one step so an interrupted run never leaves half a package.
rm -rf "$here/switchboardv1.new"
mv "$scratch/out/switchboardv1" "$here/switchboardv1.new"
rm -rf "$here/switchboardv1"
mv "$here/switchboardv1.new" "$here/switchboardv1"
echo "generated clients/go/switchboardv1"
