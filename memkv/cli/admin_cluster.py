"""`memkv admin cluster URL`: the shards of a cluster, their nodes, state and bytes, through the wire."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidArgument
from ..units import format_size


def cluster_rows(url: str, namespace: str, key: str | None) -> list[dict[str, Any]]:
    import memkv

    from ..cluster.client import ClusterTransport

    options: dict[str, Any] = {"key": key} if key else {}
    transport = memkv.connect(url, namespace=namespace, **options)
    try:
        if not isinstance(transport, ClusterTransport):
            raise InvalidArgument(f"{url} is one server, not a cluster (list several host:port, or memkv+etcd://)")
        return transport.shard_report()
    finally:
        transport.close()


def _size(value: Any) -> str:
    return format_size(value) if isinstance(value, int) else "-"


def show_cluster(url: str, namespace: str, key: str | None, as_json: bool) -> int:
    rows = cluster_rows(url, namespace, key)
    if as_json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    up = sum(1 for r in rows if r["state"] == "up")
    print(f"cluster  {len(rows)} shards, {up} up, on {len({r['node'] for r in rows})} nodes")
    print(f"  {'shard':<28} {'node':<16} {'state':<11} {'blocks':>8} {'bytes':>10} {'used':>10} {'capacity':>10}")
    for r in rows:
        blocks = r.get("blocks")
        print(f"  {r['id']:<28} {r['node']:<16} {r['state']:<11} {blocks if blocks is not None else '-':>8} "
              f"{_size(r.get('bytes')):>10} {_size(r.get('used_bytes')):>10} {_size(r.get('capacity_bytes')):>10}")
    return 0 if up == len(rows) else 1


__all__ = ["cluster_rows", "show_cluster"]
