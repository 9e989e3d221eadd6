"""SGLang HiCache reaches memkv as its L3 storage (docs/integrations.md, "SGLang").

`memkv.integrations.sglang.storage.MemkvHiCacheStorage` is loaded by
`--hicache-storage-backend dynamic` with `backend_name`, `module_path` and `class_name` in
`--hicache-storage-backend-extra-config`.
"""
