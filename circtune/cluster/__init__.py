"""Running searches on a Ray cluster: checks of the cluster-launcher configuration."""

from circtune.cluster.config import check_cluster_config

__all__ = ["check_cluster_config"]
