#!/usr/bin/env bash
# Render manifests/callfs.yaml from charts/callfs (for kubectl users): the release namespace, then every object
# of `helm template` with the chart's defaults (no test hooks). The e2e suite checks the file is this output.
#   bash hack/render-manifests.sh            # rewrite manifests/callfs.yaml
#   bash hack/render-manifests.sh --stdout   # print it
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NAMESPACE=callfs-system
HELM=${HELM:-$(bash "$ROOT/hack/tools.sh" bin-dir)/helm}
render() {
    cat <<HEADER
# Rendered from charts/callfs by hack/render-manifests.sh (do not edit by hand):
#   helm template callfs charts/callfs --namespace $NAMESPACE --skip-tests, after the Namespace
# Apply with: kubectl apply --server-side -f manifests/crds/ -f manifests/callfs.yaml
# It creates no StorageClass: see charts/callfs/README.md for the one to add once a CallFSCluster is Ready.
---
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
  labels:
    app.kubernetes.io/part-of: callfs
    # The CSI node plugin is privileged (FUSE, mount propagation): Pod Security must allow it here.
    pod-security.kubernetes.io/enforce: privileged
HEADER
    "$HELM" template callfs "$ROOT/charts/callfs" --namespace "$NAMESPACE" --skip-tests
}
if [[ ${1:-} == --stdout ]]; then
    render
else
    render > "$ROOT/manifests/callfs.yaml.tmp"
    mv "$ROOT/manifests/callfs.yaml.tmp" "$ROOT/manifests/callfs.yaml"
fi
