"""Running icnseg beyond one process: batch segmentation on Ray Data (``icnseg[ray]``)."""
