"""CallFS Kubernetes operator: reconciles ``CallFSCluster`` resources into running storage clusters."""
