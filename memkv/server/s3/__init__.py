"""The optional S3-compatible endpoint of `memkv serve` (spec/s3.md, MKV-S3-*).

A bucket is a namespace and an object a block; Dynamo KVBM (through NIXL's OBJ backend) and other
S3 clients store and load blocks with PutObject, GetObject (ranges), HeadObject and DeleteObject,
authenticated with AWS Signature Version 4 over memkv's namespace keys.
"""
