"""The version of this memkv distribution (also the `version` of HELLO answers and the admin API)."""

__version__ = "0.1.0"
