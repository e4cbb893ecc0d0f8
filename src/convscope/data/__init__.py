"""Datasets, streaming them in batches, sharding the work across torchrun ranks, and resumable results."""
