"""Which map to trust: metrics of attribution maps, each with a stated better direction, and one
runner that crosses methods with metrics over a batch or a dataset."""
