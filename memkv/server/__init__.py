"""The memkv network server: TCP wire listener, per-connection handling, keys, admin HTTP."""
