"""The Grain input pipeline: converted records -> one domain's padded, tokenised global-batch slice per step.

    step -> (domain, record indices)        BatchPlan (sampling.epoch_batches), the same on every process
         -> this process's records          process_slice: processes hold contiguous rows
         -> 1 positive + G-1 negatives each sampling.group_picks (seed, epoch, record)
         -> format + tokenize + pad         rejax.data.text, in Grain worker processes
         -> {query,reason,passage}_{ids,mask} numpy arrays, and with `teacher_scores` on, the records'
            pos_scores / neg_scores of exactly the sampled passages: teacher_scores [queries, G] float32

A batch is a pure function of (seed, step), so the iterator state is just a position in a range of
steps; Grain's `get_state`/`set_state` checkpoint it.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import signal
import threading
from typing import Mapping

import grain
import numpy as np
from absl import flags

from rejax.data import sampling, text
from rejax.data.convert import read_manifest
from rejax.data.records import from_example, has_teacher_scores
from rejax.domains import PAPER_DOMAIN_SETTINGS  # per domain (global batch, G)
from rejax.errors import InputError, RecordError


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """What the pipeline needs: data, tokenizer, lengths, per-domain (global batch, G), seed."""

  data_dir: str
  tokenizer_dir: str
  domain_settings: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=lambda: PAPER_DOMAIN_SETTINGS)
  max_query_length: int = 512  # queries and reasoning queries, EOS included
  max_passage_length: int = 512
  min_bucket: int = 16  # padded lengths are powers of two from here up to the maximum
  seed: int = 0
  teacher_scores: bool = False  # batches carry the teacher's scores of their passages (distillation): every
  # record must have them, checked when the pipeline is built

_LOAD_LOCK = threading.Lock()


class BatchPlan:
  """step -> (domain, global record indices): the same answer in every process and worker."""

  def __init__(self, counts: Mapping[str, int], settings: Mapping[str, tuple[int, int]], seed: int):
    self.domains = sampling.domain_batches(counts, settings)
    self.seed = seed
    self.steps_per_epoch = sum(d.batches_per_epoch for d in self.domains)
    if self.steps_per_epoch == 0:
      sampling.epoch_batches(self.domains, seed, 0)  # raises with the per-domain counts

  @functools.lru_cache(maxsize=4)
  def epoch(self, epoch: int) -> list[tuple[int, np.ndarray]]:
    return sampling.epoch_batches(self.domains, self.seed, epoch)

  def batch(self, step: int) -> tuple[int, int, np.ndarray]:
    """(epoch, domain position, record indices) of a step's global batch."""
    epoch, position = divmod(step, self.steps_per_epoch)
    domain, indices = self.epoch(epoch)[position]
    return epoch, domain, indices


class BuildBatch(grain.transforms.Map):
  """A step number -> this process's slice of that step's tokenised batch (runs in Grain workers)."""

  def __init__(self, config: PipelineConfig, process_index: int = 0, process_count: int = 1):
    self.config, self.process_index, self.process_count = config, process_index, process_count
    manifest = read_manifest(config.data_dir)
    counts = {name: info["records"] for name, info in manifest["domains"].items()}
    self.plan = BatchPlan(counts, config.domain_settings, config.seed)
    for spec in self.plan.domains:
      sampling.process_slice(spec.batch_size, 0, process_count)  # fail now, not in a worker
    if config.teacher_scores:
      self._check_teacher_scores(manifest)

  def _check_teacher_scores(self, manifest: dict) -> None:
    """InputError naming the first domain with a record that has no teacher scores (and that record)."""
    for name, info in sorted(manifest["domains"].items()):
      if "scored" in info:  # counted by `rejax data convert`
        scored, first = info["scored"], info.get("first_unscored")
      else:  # a dataset converted before the count: read the records' list of optional fields
        source = self._sources[name]
        unscored = [i for i in range(len(source)) if not {"pos_scores", "neg_scores"} <= set(
            _text(k) for k in source[i]["present"])]
        scored, first = info["records"] - len(unscored), _text(source[unscored[0]]["source"]) if unscored else None
      if scored < info["records"]:
        raise InputError(f"{self.config.data_dir}: domain {name!r} has {info['records'] - scored} of "
                         f"{info['records']} records without teacher scores (pos_scores and neg_scores), the first "
                         f"at {first}; distillation (loss.distill_weight > 0) needs them on every record")

  @functools.cached_property
  def _sources(self):
    import tensorflow_datasets as tfds

    with _LOAD_LOCK:
      return tfds.builder_from_directory(self.config.data_dir).as_data_source()

  @functools.cached_property
  def _per_thread(self) -> threading.local:
    return threading.local()

  @property
  def _tokenizer(self):
    # One per reading thread: a HF tokenizer call sets truncation on its shared Rust backend, so two
    # threads tokenising with different max_length through one tokenizer would cut each other's texts.
    local = self._per_thread
    if not hasattr(local, "tokenizer"):
      with _LOAD_LOCK:  # transformers' lazy imports are not thread-safe
        local.tokenizer = text.load_tokenizer(self.config.tokenizer_dir)
    return local.tokenizer

  def __getstate__(self):  # workers re-open sources and tokenizers themselves
    return {k: v for k, v in self.__dict__.items() if k not in ("_sources", "_per_thread")}

  def map(self, step: int) -> dict[str, np.ndarray]:
    cfg = self.config
    epoch, d, indices = self.plan.batch(int(step))
    spec = self.plan.domains[d]
    source = self._sources[spec.name]
    queries, reasons, passages, scores = [], [], [], []
    for index in indices[sampling.process_slice(spec.batch_size, self.process_index, self.process_count)]:
      example = source[int(index)]
      record = from_example(example)
      where = _text(example["source"])
      queries.append(text.format_query(record["query"], record["prompt"]))
      reasons.append(text.format_query(record.get("reasoning_query") or record["query"], record["prompt"]))
      positive, negatives = sampling.group_picks(record["pos"], record["neg"], spec.group_size, cfg.seed, epoch, d,
                                                 int(index), where)
      passages += [record["pos"][positive]] + [record["neg"][i] for i in negatives]
      if cfg.teacher_scores:
        if not has_teacher_scores(record):
          raise RecordError(f"{where}: no teacher scores (pos_scores and neg_scores); distillation needs them")
        scores.append(sampling.group_scores(record, positive, negatives))
    batch = {"step": np.int64(step), "domain": np.int32(d)}
    if cfg.teacher_scores:
      batch["teacher_scores"] = np.asarray(scores, np.float32)  # [queries, G], the passages' order
    for name, texts, max_length in (("query", queries, cfg.max_query_length),
                                    ("reason", reasons, cfg.max_query_length),
                                    ("passage", passages, cfg.max_passage_length)):
      ids = text.tokenize(self._tokenizer, texts, max_length)
      length = text.bucket_length(max(map(len, ids)), max_length, cfg.min_bucket)
      batch[f"{name}_ids"], batch[f"{name}_mask"] = text.pad_batch(ids, length, text.pad_id_of(self._tokenizer))
    return batch


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def make_dataset(config: PipelineConfig, *, num_steps: int, process_index: int = 0, process_count: int = 1,
                 num_workers: int = 0, prefetch: int = 2) -> grain.IterDataset:
  """The batches of steps 0 .. num_steps-1 for one process; iterate it, checkpoint with get_state().

  num_workers > 0 builds batches in that many Grain worker processes (spawned; call from a
  `__main__`-guarded program). The order never depends on the worker count.
  """
  build = BuildBatch(config, process_index, process_count)
  # Open the sources here, on the calling thread: importing tensorflow_datasets swaps builtins.__import__
  # for a moment (etils lazy imports), which would hand other threads' imports lazy stand-ins.
  build._sources  # noqa: B018
  dataset = grain.MapDataset.range(num_steps).map(build)
  options = grain.ReadOptions(num_threads=1 if num_workers else 2, prefetch_buffer_size=prefetch)
  iterable = dataset.to_iter_dataset(options)
  if num_workers:
    if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; a plain program never parses them
      flags.FLAGS.mark_as_parsed()
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                                 per_worker_buffer_size=prefetch),
                                    worker_init_fn=ignore_stop_signals)
  return iterable


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def ignore_stop_signals(worker_index: int, worker_count: int) -> None:
  """In each Grain worker: the signals that stop a run are the main process's to handle. A VM shutting down or
  SLURM's `--signal` reaches every process, and a run stopping on one still draws batches until it has saved
  (rejax.train.preemption). The workers end when the main process closes its iterator (`close_at_exit`)."""
  for number in STOP_SIGNALS:
    signal.signal(number, signal.SIG_IGN)


def close_at_exit(iterator):
  """`iterator`, closed when the program ends if not before: its Grain workers, which ignore SIGTERM, then stop by
  Grain's own protocol (an event, a join), before multiprocessing's exit hook would send them SIGTERM and wait."""
  atexit.register(iterator.close)  # atexit runs last-registered first: before multiprocessing's hook
  return iterator


def tokens_in(batch: Mapping[str, np.ndarray]) -> int:
  """Real (unpadded) tokens of a batch, all three inputs."""
  return int(sum(batch[f"{name}_mask"].sum() for name in ("query", "reason", "passage")))


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # Grain forks/spawns workers after tokenizing
