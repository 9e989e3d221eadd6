"""`memkv torture`: the reliability campaign in the repository (docs/reliability.md).

Each scenario returns a JSON-able dict whose counts of failures must be zero: fault sweep,
power cuts, a kill -9 crash loop under load, a fuzzer of the frame and message parsers, socket
fuzzing of a live server, and a connection soak.
"""
