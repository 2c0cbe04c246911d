"""Subset indexes that other loaders read: DALI `.idx` files, a wids description, an Energon split with
`exclude:` entries, and DataComp's uids (docs/indexes.md). The source shards are named, never copied."""
