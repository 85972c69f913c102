"""What every stage needs: the config, the working directory's paths, and lazily built backends, embedder,
corpora and sources (each built once per process). Under `engine="ray"` the units' requests and the mining
embeddings run on Ray (synth.raydata), the rest of the stage on this process as under the local engine."""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Sequence

import ml_collections

from synth.backends import Backend, BackendError, Messages, Sampling, make_backend
from synth.config import ConfigError
from synth.corpus import read_corpus, read_gold_ids
from synth.domains import DomainSpec, domain_spec
from synth.embedders import Embedder, make_embedder
from synth.sources import select_sources
from synth.textproc import stable_seed
from synth.summary import StageSummary, merge_counts, split_rows
from synth.units import Shard, UnitRunner, write_jsonl_atomic


class Context:
  """One synthesis run: `backends` / `embedder` may be given (tests), else they are built from the config."""

  def __init__(self, config: ml_collections.ConfigDict, *, shard: Shard = Shard(),
               backends: dict[str, Backend] | None = None, embedder: Embedder | None = None, progress: bool = True):
    self.config = config
    self.workdir = pathlib.Path(config.workdir)
    self.shard, self.progress = shard, progress
    self._backends = dict(backends or {})
    self._given = set(self._backends)
    self._embedder = embedder
    self._embedder_given = embedder is not None
    self.replay = None  # under the ray engine, the answers of the unit being replayed (synth.raydata.engine)
    if config.engine == "ray":
      try:
        import ray  # noqa: F401
        import ray.data.llm  # noqa: F401
      except ImportError as e:
        raise ConfigError(f"engine='ray' needs Ray Data ({e}): pip install -e '.[synth,ray]'") from None
    self.domains: dict[str, DomainSpec] = {
      name: domain_spec(name, block, f"domains.{name}") for name, block in config.domains.items()}

  def backend(self, name: str) -> Backend:
    """The backend `backends.NAME` of the config, built on first use; names with equal settings share one."""
    if name in self._given:
      return self._backends[name]
    key = json.dumps(self.config.backends[name].to_dict(), sort_keys=True)
    if key not in self._backends:
      self._backends[key] = make_backend(self.config.backends[name], f"backends.{name}")
    return self._backends[key]

  def chat(self, name: str, requests: Sequence[Messages], sampling: Sampling) -> list[str | None]:
    """The answers of backend NAME to one unit's requests, one per request (None: that one request failed).

    BackendError, prefixed with `backends.NAME`, when the backend fails or answers none of the requests: such
    a unit got no answers, so it must not be recorded as done (a re-run after the backend is fixed does it).
    """
    try:
      if self.replay is not None:
        answers = self.replay.chat(name, requests, sampling)
      else:
        answers = self.backend(name).chat(requests, sampling)
    except BackendError as e:
      raise BackendError(f"backends.{name}: {e}") from e
    if requests and all(answer is None for answer in answers):
      raise BackendError(f"backends.{name} ({self._describe_backend(name)}): no answer to any of the "
                         f"{len(requests)} requests of a unit; nothing of it is recorded")
    return answers

  def _describe_backend(self, name: str) -> str:
    block = self.config.backends.get(name) or {}
    return " ".join(str(x) for x in (block.get("kind"), block.get("base_url") or block.get("model")) if x)

  def embedder(self) -> Embedder:
    """The mining embedder of `embedder`, built on first use."""
    if self._embedder is None:
      if self.config.engine == "ray":
        from synth.raydata.embedder import RayEmbedder

        self._start_ray()
        block = self.config.ray
        self._embedder = RayEmbedder(self.config.embedder.to_dict(), block.embed_replicas, block.embed_gpus)
      else:
        self._embedder = make_embedder(self.config.embedder)
    return self._embedder

  def _start_ray(self) -> None:
    from synth.raydata.engine import start_ray

    start_ray(self.config.ray.address)

  @functools.lru_cache(maxsize=None)
  def corpus(self, domain: str) -> dict[str, str]:
    """{doc id: text} of the domain's corpus."""
    block = self.config.domains[domain]
    return read_corpus(block.corpus, block.get("max_documents", 0))

  @functools.lru_cache(maxsize=None)
  def gold(self, domain: str) -> frozenset[str]:
    """The test-set gold doc ids of `domains.D.gold` (files of qrels or BRIGHT examples)."""
    return frozenset().union(*(read_gold_ids(p) for p in self.config.domains[domain].get("gold", ())))

  @functools.lru_cache(maxsize=None)
  def sources(self, domain: str):
    """(source doc ids, drop reasons of the other documents): see synth.sources.select_sources."""
    block = self.config.sources
    return select_sources(self.corpus(domain), set(self.gold(domain)), min_chars=block.min_chars,
                          max_chars=block.max_chars, max_sources=block.max_per_domain, seed=self.config.seed)

  def path(self, stage: str, domain: str, suffix: str = ".jsonl") -> pathlib.Path:
    """`WORKDIR/STAGE/DOMAIN{suffix}`: a stage's merged output (or its summary, with suffix)."""
    return self.workdir / stage / f"{domain}{suffix}"

  def require(self, stage: str, domain: str) -> pathlib.Path:
    """The merged output of an earlier stage, or FileNotFoundError saying which command makes it."""
    path = self.path(stage, domain)
    if not path.exists():
      raise FileNotFoundError(f"{path}: missing; run `synth {stage}` (or `synth run`) with this config first")
    return path

  def runner(self, stage: str, domain: str) -> UnitRunner:
    """The unit runner of (stage, domain), unit size from `STAGE.unit_size`."""
    settings = dict(unit_size=self.config[stage].unit_size, shard=self.shard, desc=f"{stage} {domain}",
                    progress=self.progress)
    if self.config.engine == "ray" and stage != "mine":  # mining's embedder is on Ray, its search here
      from synth.raydata.engine import RayUnitRunner

      self._start_ray()
      return RayUnitRunner(self, self.path(stage, domain, ".units"), **settings)
    return UnitRunner(self.path(stage, domain, ".units"), **settings)

  def run_units(self, stage: str, domain: str, items: Sequence[dict], keys: Sequence[str],
                process) -> tuple[list[dict], dict[str, int]] | None:
    """(kept rows, count per drop reason) of `process` run over `items` in resumable units (`runner`); None while
    units of other shards are not done."""
    rows = self.runner(stage, domain).run(items, keys, process)
    return None if rows is None else split_rows(rows)

  def keep(self, stage: str, domain: str, kept: list[dict], total: int, *dropped) -> StageSummary:
    """Writes the stage's kept rows (`STAGE/DOMAIN.jsonl`, whole or not at all) and returns its summary."""
    write_jsonl_atomic(self.path(stage, domain), kept)
    return StageSummary(stage, domain, total, len(kept), merge_counts(*dropped))

  def sampling(self, stage: str, *key: object) -> Sampling:
    """`STAGE.sampling` with a seed drawn from (config seed, key): a unit samples the same on every re-run."""
    block = self.config[stage].sampling
    return Sampling(temperature=block.temperature, top_p=block.top_p, max_tokens=block.max_tokens,
                    seed=stable_seed(self.config.seed, stage, *key) % 2**31)

  def close(self, keep: set[str] = frozenset()) -> None:
    """Closes the backends this context built (not those handed in), except those of the names in `keep`."""
    kept = {json.dumps(self.config.backends[name].to_dict(), sort_keys=True) for name in keep}
    for key, backend in list(self._backends.items()):
      if key not in self._given and key not in kept:
        backend.close()
        del self._backends[key]
    if not self._embedder_given and hasattr(self._embedder, "close"):  # Ray's embedder actors hold GPUs
      self._embedder.close()
      self._embedder = None
