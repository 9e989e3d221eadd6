"""The memkv wire protocol codec: frames, opcodes, metadata and signing. Pure, no sockets."""
