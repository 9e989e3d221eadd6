"""LMCache remote storage plugin over memkv (`RemoteConnector` and its `ConnectorAdapter`).

The payload of a block is the memory object's bytes as they are (no header); shapes, dtype and
format of a full chunk are part of the fingerprint, so a reader allocates the right object
before the bytes arrive and reads straight into it (one copy, socket to memory object).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from lmcache.utils import CacheEngineKey
from lmcache.v1.memory_management import MemoryObj
from lmcache.v1.storage_backend.connector import ConnectorAdapter, ConnectorContext
from lmcache.v1.storage_backend.connector.base_connector import RemoteConnector

from ...blocks import BlockMeta
from ...transport import PutItem
from ..engine_keys import EngineKeys, adapter_fingerprint, hash_seed_attributes
from ..tier import GuardedTier, TierSettings

PLUGIN_TYPE = "memkv"
URL_SCHEMES = ("memkv+tcp://", "memkv+nixl://")
_SETTING_NAMES = ("url", "namespace", "key", "key_file", "deadline_s", "connect_timeout_s", "retry_interval_s",
                  "max_pending_stores")

T = TypeVar("T")
# the connector's `list` method hides the builtin inside the class
Keys = list[CacheEngineKey]
Objects = list[MemoryObj]
MaybeObjects = list[MemoryObj | None]


def settings_from_context(context: ConnectorContext) -> tuple[TierSettings, str]:
    """Tier settings and the weights identity from the URL and `remote_storage_plugin.<name>.*`."""
    prefix = f"remote_storage_plugin.{context.plugin_name or PLUGIN_TYPE}."
    extra: dict[str, Any] = dict(context.config.extra_config or {}) if context.config is not None else {}
    options = {name: extra[prefix + name] for name in _SETTING_NAMES if prefix + name in extra}
    if context.url.startswith(URL_SCHEMES):
        options["url"] = context.url
    return TierSettings.from_options(options), str(extra.get(prefix + "weights", ""))


class MemkvConnector(RemoteConnector):  # type: ignore[misc]
    """One LMCache worker's remote tier in a memkv namespace."""

    def __init__(self, context: ConnectorContext, settings: TierSettings, weights: str = "",
                 tier: GuardedTier | None = None) -> None:
        local = context.local_cpu_backend
        super().__init__(local.config, local.metadata)
        self.loop = context.loop
        self.local_cpu_backend = local
        self.tier = tier or GuardedTier(settings)
        algorithm = getattr(context.config, "pre_caching_hash_algorithm", "builtin")
        self._seed = hash_seed_attributes("LMCache", algorithm == "builtin")
        self._weights = weights
        self._layout = f"lmcache-{self.meta_fmt.name}:" + ";".join(
            "x".join(str(d) for d in shape) for shape in self.meta_shapes)

    # ---- keys ------------------------------------------------------------------------------------
    @functools.lru_cache(maxsize=64)  # noqa: B019 - few distinct (model, rank, dtype, tags) per worker
    def _keys_for(self, model: str, world_size: int, worker_id: int, dtype: str, tags: tuple[Any, ...]) -> EngineKeys:
        extra: dict[str, str | int] = dict(self._seed)
        if tags:
            extra["tags"] = ";".join(f"{name}={value}" for name, value in tags)
        return EngineKeys(adapter_fingerprint(model, layout=self._layout, dtype=dtype, world_size=world_size,
                                              rank=worker_id, weights=self._weights, extra=extra))

    def _key(self, key: CacheEngineKey) -> tuple[bytes, BlockMeta]:
        dtype = str(key.dtype).removeprefix("torch.")
        keys = self._keys_for(key.model_name, key.world_size, key.worker_id, dtype, key.tags or ())
        rank_fits = 0 <= key.worker_id < key.world_size < 2**16
        meta = BlockMeta(fingerprint=keys.fingerprint, dtype=dtype,
                         tp_rank=key.worker_id if rank_fits else 0, tp_size=key.world_size if rank_fits else 1)
        return keys.key(key.chunk_hash), meta

    async def _run(self, call: Callable[[], T]) -> T:
        result: T = await self.loop.run_in_executor(None, call)
        return result

    # ---- RemoteConnector ------------------------------------------------------------------------------
    async def exists(self, key: CacheEngineKey) -> bool:
        return await self._run(lambda: self.exists_sync(key))

    def exists_sync(self, key: CacheEngineKey) -> bool:
        return self.tier.exists([self._key(key)[0]])[0]

    def support_batched_contains(self) -> bool:
        return True

    def batched_contains(self, keys: Keys) -> int:
        return self.tier.prefix_length([self._key(k)[0] for k in keys])

    async def batched_async_contains(self, lookup_id: str, keys: Keys, pin: bool = False) -> int:
        return await self._run(lambda: self.batched_contains(keys))

    async def get(self, key: CacheEngineKey) -> MemoryObj | None:
        found = await self._run(lambda: self._load_each([key]))
        return found[0]

    def support_batched_get(self) -> bool:
        return True

    async def batched_get(self, keys: Keys) -> MaybeObjects:
        return await self._run(lambda: self._load_each(keys))

    async def batched_get_non_blocking(self, lookup_id: str, keys: Keys) -> Objects:
        return await self._run(lambda: self._load_prefix(keys))

    async def put(self, key: CacheEngineKey, memory_obj: MemoryObj) -> None:
        await self._store([key], [memory_obj])

    def support_batched_put(self) -> bool:
        return True

    async def batched_put(self, keys: Keys, memory_objs: Objects) -> None:
        await self._store(keys, memory_objs)

    def remove_sync(self, key: CacheEngineKey) -> bool:
        return self.tier.delete([self._key(key)[0]]) == 1

    async def list(self) -> builtins.list[str]:
        raise NotImplementedError("memkv does not list keys: its keys are hashes that cannot be turned back into "
                                  "LMCache keys")

    async def close(self) -> None:
        await self._run(self.tier.close)

    # ---- transfers ----------------------------------------------------------------------------------
    def _load_each(self, keys: Keys) -> MaybeObjects:
        """One memory object per key, None where the block did not load."""
        memkv_keys = [self._key(k)[0] for k in keys]
        objects: Objects = []
        for _ in keys:
            obj = self.local_cpu_backend.allocate(self.meta_shapes, self.meta_dtypes, self.meta_fmt)
            if obj is None:
                break
            objects.append(obj)
        lengths = self.tier.load_into(memkv_keys[: len(objects)], [obj.byte_array for obj in objects])
        loaded: MaybeObjects = [None] * len(keys)
        for index, (obj, length) in enumerate(zip(objects, lengths, strict=True)):
            try:
                if length is not None:
                    loaded[index] = self.reshape_partial_chunk(obj, length)
                    continue
            except ValueError:  # a block of another layout under our key: a miss, never bad KV
                pass
            obj.ref_count_down()
        return loaded

    def _load_prefix(self, keys: Keys) -> Objects:
        """The leading run of blocks that loaded; whatever follows a miss is released."""
        prefix: Objects = []
        broken = False
        for obj in self._load_each(keys):
            broken = broken or obj is None
            if obj is None:
                continue
            if broken:
                obj.ref_count_down()
            else:
                prefix.append(obj)
        return prefix

    async def _store(self, keys: Keys, memory_objs: Objects) -> None:
        """Store through the tier's bounded backlog; a full backlog drops the store (MKV-INT-004)."""
        items = []
        for key, obj in zip(keys, memory_objs, strict=True):
            memkv_key, meta = self._key(key)
            items.append(PutItem(memkv_key, obj.byte_array, meta))
        finished: asyncio.Future[list[bool]] = self.loop.create_future()

        def resolve(stored: list[bool]) -> None:
            if not finished.done():
                finished.set_result(stored)

        def done(stored: list[bool]) -> None:
            self.loop.call_soon_threadsafe(resolve, stored)

        if self.tier.submit_store(items, done):
            await finished


class MemkvConnectorAdapter(ConnectorAdapter):  # type: ignore[misc]
    """Makes LMCache build a `MemkvConnector` for `memkv+tcp://` URLs and `plugin://memkv`."""

    def __init__(self) -> None:
        super().__init__(URL_SCHEMES[0])

    def can_parse(self, url: str) -> bool:
        if url.startswith(URL_SCHEMES):
            return True
        return url.startswith("plugin://") and url.removeprefix("plugin://").split(".", 1)[0] == PLUGIN_TYPE

    def create_connector(self, context: ConnectorContext) -> RemoteConnector:
        settings, weights = settings_from_context(context)
        return MemkvConnector(context, settings, weights)
