"""memkv conformance suite: certify any implementation of the transport interface against the spec."""
