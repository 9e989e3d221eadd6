"""NIXL support shared by the client backend and the server: the library environment, the API loader."""
