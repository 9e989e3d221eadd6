"""memkv conformance suite: certify any implementation of the transport interface against the spec.

Point it at a target (a `memkv.connect` URL, or `module:factory` for a third-party adapter),
run it, and get a certification report requirement by requirement:

    memkv conformance --target file:///tmp/store --certify --report out/

The checks are ordinary pytest tests in `memkv.conformance.checks`, parametrised by the `target`
fixture of `memkv.conformance.plugin`; each names the requirement IDs it checks.
"""

SUITE_VERSION = "1.0.0"

__all__ = ["SUITE_VERSION"]
