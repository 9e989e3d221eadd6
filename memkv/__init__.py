"""memkv: an open, spec-first KV-cache block store for LLM inference."""

from .blocks import BlockMeta, Limits
from .buffers import MemoryRegion, aligned_buffer
from .checksum import payload_checksum
from .connect import connect
from .errors import ErrorCode, MemkvError
from .keys import (
    KEY_SIZE,
    block_key,
    key_from_engine_hash,
    key_from_sequence_hash,
    model_fingerprint,
    prefix_chain,
)
from .sessions import SessionInfo, SessionState
from .transport import (
    SPEC_VERSION,
    BlockInfo,
    Capabilities,
    GetResult,
    ItemResult,
    LookupResult,
    PutItem,
    ResumeResult,
    Transport,
)
from .version import __version__

__all__ = [
    "KEY_SIZE", "SPEC_VERSION", "BlockInfo", "BlockMeta", "Capabilities", "ErrorCode", "GetResult",
    "ItemResult", "Limits", "LookupResult", "MemkvError", "MemoryRegion", "PutItem", "ResumeResult",
    "SessionInfo", "SessionState", "Transport", "aligned_buffer", "block_key", "connect",
    "key_from_engine_hash", "key_from_sequence_hash", "model_fingerprint", "payload_checksum",
    "prefix_chain", "__version__",
]
