"""Targets that ship with the suite: the memkv server (running, or started by the suite)."""
