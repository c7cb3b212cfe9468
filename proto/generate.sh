#!/usr/bin/env bash
# Regenerates the Python modules of the CSI wire contract from proto/csi.proto:
#   csi_pb2.py       messages and enums           (protoc --python_out)
#   csi_pb2.pyi      their type stubs             (protoc --pyi_out)
#   csi_pb2_grpc.py  service stubs and servicers  (grpc_tools --grpc_python_out)
# into csi/callfs_csi/ (default) or the directory given as the only argument.
# The output depends only on csi.proto and the grpcio-tools version (pinned in
# pyproject.toml), so tests/unit/test_csi_proto.py can regenerate into a temp
# directory and require byte-identical files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../csi/callfs_csi}"
python="${PYTHON:-python3}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# protoc names output files after the proto's path relative to -I, so
# compiling from proto/ gives csi_pb2*.py and registers the file as "csi.proto".
cd "$here"
"$python" -m grpc_tools.protoc -I. \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" csi.proto

# The gRPC module imports its messages as a top-level module ("import csi_pb2");
# they live in the callfs_csi package.
grpc_module="$out/csi_pb2_grpc.py"
if ! grep -qx 'import csi_pb2 as csi__pb2' "$grpc_module"; then
  echo "generate.sh: unexpected import line in $grpc_module (grpcio-tools changed its output?)" >&2
  exit 1
fi
sed -i 's/^import csi_pb2 as csi__pb2$/from callfs_csi import csi_pb2 as csi__pb2/' "$grpc_module"
