"""LMCache reaches memkv two ways (docs/integrations.md, "LMCache").

- `memkv.integrations.lmcache.remote.MemkvConnectorAdapter`: a remote storage plugin
  (`remote_storage_plugins`) serving `remote_url: memkv+tcp://...`;
- `memkv.integrations.lmcache.l2.MemkvL2Adapter`: an MP-mode L2 adapter
  (`--l2-adapter '{"type": "plugin", "module_path": "memkv.integrations.lmcache.l2", ...}'`).

Both import LMCache and torch; nothing else in memkv imports this package.
"""
