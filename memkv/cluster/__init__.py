"""Several memkv targets seen as one: placement of keys on shards, and the cluster client (spec/cluster.md)."""
