"""Shared fixtures: real PostgreSQL/Redis servers, storage nodes as subprocesses, the Kubernetes control plane."""

pytest_plugins = ["support.pg", "support.redis_server", "support.s3", "support.node", "support.mount", "support.kube",
                  "support.csi_controller"]
