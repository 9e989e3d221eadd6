"""memkv benchmarks: memkv against the raw path in the same run (file, TCP, NIXL)."""
