"""Shared fixtures: real PostgreSQL/Redis servers, storage nodes (in-process and as subprocesses), the Kubernetes
control plane and a real node beside it."""

pytest_plugins = ["support.pg", "support.redis_server", "support.s3", "support.node", "support.app_node",
                  "support.s3_face", "support.mount", "support.kube", "support.csi_controller",
                  "support.realnode"]
