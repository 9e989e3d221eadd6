"""NIXL support shared by the client backend and the server: the typed agent (`agent`, the only
module that touches the NIXL Python API), the library environment, the pump and staging pool."""
