"""CallFS CSI driver (``csi.callfs.io``): identity, controller and node services, and the FUSE mount daemon."""
