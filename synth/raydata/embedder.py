"""Mining's embedder on Ray actors: `ray.embed_replicas` copies of the configured embedder (each on
`ray.embed_gpus` GPUs), kept for the whole run, texts dealt out in chunks and put back in order.

Ray restarts an actor that dies and retries its chunk (max_restarts / max_task_retries); faiss search stays on
the driver (synth.stages.mine). Each text's embedding is the embedder's own, so a chunking that differs from
the local engine's changes nothing for embedders that embed each text on its own (hashing); batched models
may differ in the last bits through padding.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

CHUNK = 256  # texts per actor call


class _EmbedActor:
  def __init__(self, block: Mapping):
    from synth.embedders import make_embedder

    self.embedder = make_embedder(block)

  def name(self) -> str:
    return self.embedder.name

  def embed(self, texts: Sequence[str], instruction: str | None) -> np.ndarray:
    return self.embedder.embed(texts, instruction=instruction)


class RayEmbedder:
  """The Embedder interface over a pool of Ray actors, each holding one copy of the embedder `block`."""

  def __init__(self, block: Mapping, replicas: int = 1, gpus: float = 0.0):
    import ray

    actor = ray.remote(_EmbedActor).options(num_gpus=gpus, max_restarts=-1, max_task_retries=-1)
    self.actors = [actor.remote(dict(block)) for _ in range(replicas)]
    self.name = ray.get(self.actors[0].name.remote())  # keys the corpus cache as the local engine's does

  def embed(self, texts: Sequence[str], instruction: str | None = None) -> np.ndarray:
    """float32 [N, D] in the order of `texts`."""
    from ray.util import ActorPool

    chunks = [list(texts[i : i + CHUNK]) for i in range(0, len(texts), CHUNK)]
    pool = ActorPool(self.actors)
    parts = list(pool.map(lambda a, chunk: a.embed.remote(chunk, instruction), chunks))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)

  def close(self) -> None:
    """Ends the actors (and frees their GPUs)."""
    import ray

    for a in self.actors:
      ray.kill(a)
