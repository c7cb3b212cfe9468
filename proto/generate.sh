#!/usr/bin/env bash
# Regenerates the Python modules of the two gRPC contracts the CSI plugin speaks:
#   csi.proto                 the CSI wire contract (served to kubelet and the sidecars)
#   pluginregistration.proto  the kubelet's plugin registration API (served to kubelet by `callfs-csi --mode node`)
# For each NAME.proto:
#   NAME_pb2.py       messages and enums           (protoc --python_out)
#   NAME_pb2.pyi      their type stubs             (protoc --pyi_out)
#   NAME_pb2_grpc.py  service stubs and servicers  (grpc_tools --grpc_python_out)
# into csi/callfs_csi/ (default) or the directory given as the only argument.
# The output depends only on the .proto files and the grpcio-tools version (pinned in pyproject.toml), so
# tests/unit/test_csi_proto.py can regenerate into a temp directory and require byte-identical files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../csi/callfs_csi}"
python="${PYTHON:-python3}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# protoc names output files after the proto's path relative to -I, so compiling from proto/ gives NAME_pb2*.py
# and registers the file as "NAME.proto".
cd "$here"
for name in csi pluginregistration; do
  "$python" -m grpc_tools.protoc -I. \
    --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" "$name.proto"

  # The gRPC module imports its messages as a top-level module ("import NAME_pb2"); they live in the callfs_csi
  # package. (protoc doubles the underscores of the module name in the alias.)
  grpc_module="$out/${name}_pb2_grpc.py"
  line="import ${name}_pb2 as ${name//_/__}__pb2"
  if ! grep -qxF "$line" "$grpc_module"; then
    echo "generate.sh: unexpected import line in $grpc_module (grpcio-tools changed its output?)" >&2
    exit 1
  fi
  sed -i "s/^${line}\$/from callfs_csi ${line}/" "$grpc_module"
done
