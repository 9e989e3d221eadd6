"""Engine adapters: vLLM, LMCache and SGLang reach memkv through their own plug-in points.

Each engine has its own module (imported only by that engine); what they share lives in
`memkv.integrations.engine_keys` (keys, fingerprints, the PYTHONHASHSEED guard) and
`memkv.integrations.tier` (a client that turns a slow or dead server into cache misses).
"""
