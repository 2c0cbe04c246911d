"""datapruner.data: a run's kept samples read in place from the source shards, as webdataset-style dicts,
without writing pruned shards (docs/training.md).

    from datapruner.data import KeptSamples
    samples = KeptSamples("runs/demo", seed=0)   # a torch IterableDataset; webdataset stages plug in

This folder also holds the shipped sample shards (sample/, package data)."""

from datapruner.data.reader import KeptSamples

__all__ = ["KeptSamples"]
