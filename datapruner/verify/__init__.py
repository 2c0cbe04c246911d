"""Verify: train students on pruned subsets (optionally distilled from a full-data teacher).

Only `datapruner.pipelines.verify` imports this package; torch is imported inside it.
"""
