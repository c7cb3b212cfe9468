"""CallFS Kubernetes operator: reconciles ``CallFSCluster`` resources into running storage clusters.

Modules: ``spec`` (the CR spec as a typed object), ``names`` (child names, labels, DNS names), ``builders/``
(pure: spec → child manifests, one module per kind), ``container_env`` (a container's environment as the
kubelet resolves it), ``status`` (pure: children's state → status and conditions), ``scaling`` (pure: when a
scale-down may proceed), ``deletion`` (pure: which PersistentVolumes block deletion), ``apply`` (the I/O shell:
server-side apply, reads), ``handlers`` (thin kopf handlers), ``metrics``, ``main`` (``callfs-operator``).
"""
