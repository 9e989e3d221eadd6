"""Put items for a prefix chain with the metadata invalidation needs (fingerprint and parent)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .blocks import BlockMeta
from .buffers import BufferLike
from .errors import InvalidArgument
from .keys import ROOT_PARENT
from .transport import DEFAULT_META, PutItem


def chain_items(fingerprint: bytes, chain: Sequence[bytes], payloads: Sequence[BufferLike], start: int = 0,
                meta: BlockMeta = DEFAULT_META) -> list[PutItem]:
    """Items for chain[start:], payloads[i] being the block of chain[start + i].

    Each block's metadata carries the chain's model fingerprint and its parent key (the previous key
    in the chain, ROOT_PARENT for the first), so invalidation by model and by prefix finds it.
    `meta` supplies the other fields (dtype, token_count, layers, tensor-parallel rank).
    """
    if not 0 <= start <= len(chain):
        raise InvalidArgument(f"start {start} is outside the chain of {len(chain)} keys")
    if len(payloads) != len(chain) - start:
        raise InvalidArgument(f"{len(payloads)} payloads for {len(chain) - start} keys (chain[{start}:])")
    return [PutItem(key, payload, dataclasses.replace(meta, fingerprint=fingerprint,
                                                      parent=chain[index - 1] if index else ROOT_PARENT))
            for index, (key, payload) in enumerate(zip(chain[start:], payloads, strict=True), start)]
