"""memkv's binding of NVIDIA NIXL: `agent` is the only module that touches the NIXL Python API."""
