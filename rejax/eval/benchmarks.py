"""The benchmarks `rejax eval` knows, one entry each, and the single BEIR directory of `--dataset`.

An entry holds everything about its benchmark: its name (its flag, `--bright`, and its results folder,
`results/bright/`), the name its results carry, its tasks in the paper's order, the loader of one task, the
protocol's max length, its query instructions, its hub id and flag help, and its own on/off options (BRIGHT's
`--long-documents`). rejax/eval/command.py and the `eval` flags of rejax/cli.py read this table and name no
benchmark, so a new benchmark is its loader module and one entry in BENCHMARKS.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable, Mapping, Sequence

from rejax.domains import INSTRUCTIONS as BRIGHT_INSTRUCTIONS
from rejax.eval import bright, r2med
from rejax.eval.beir import RetrievalDataset, load_beir
from rejax.eval.benchmark import check_tasks

Source = str | pathlib.Path  # a benchmark flag's argument: a local directory or a hub id


@dataclasses.dataclass(frozen=True)
class Option:
  """A benchmark's own on/off flag: its loader's keyword, and the name the benchmark's results carry when on."""

  name: str  # the loader's keyword; the flag is --{name with - for _}: long_documents -> --long-documents
  help: str
  display_name: str  # replaces the benchmark's display name in RESULTS.json and RESULTS.md

  @property
  def flag(self) -> str:
    return "--" + self.name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """A benchmark of several tasks: per-task runs and metrics, and their average (rejax.eval.benchmark)."""

  name: str  # its flag (--bright) and its results folder (results/bright/MODEL/)
  display_name: str  # in RESULTS.json, RESULTS.md and "unknown ... task" errors
  tasks: tuple[str, ...]  # the paper's order
  load_task: Callable[..., RetrievalDataset]  # (source, task, **options) -> one task
  max_length: int  # the protocol's max tokens per text when --max-length is not given (docs/method.md#protocol)
  hub_id: str  # what the flag takes in place of a directory, fetched when online
  help: str  # the flag's help
  instructions: Mapping[str, str] = dataclasses.field(default_factory=dict)  # task -> query instruction, if any
  options: tuple[Option, ...] = ()
  # (source, tasks, **options) -> the local directory, fetched from the hub once for the chosen tasks; None: the
  # loader takes the source as given.
  resolve: Callable[..., Source] | None = None

  @property
  def flag(self) -> str:
    return "--" + self.name

  def check_tasks(self, requested: Sequence[str] | None) -> list[str]:
    """`requested` (every task when None) in the paper's order; an unknown name raises ValueError naming it."""
    return check_tasks(requested, self.tasks, self.display_name)

  def results_name(self, options: Mapping[str, bool]) -> str:
    """The name RESULTS.json and RESULTS.md give the benchmark with `options` ({option name: on})."""
    return next((o.display_name for o in self.options if options.get(o.name)), self.display_name)

  def task_loader(self, source: Source, tasks: Sequence[str], *, instruction: str | None = None,
                  **options: bool) -> Callable[[str], RetrievalDataset]:
    """A function loading one of `tasks` from `source` with its query instruction: `instruction` when given, else
    the benchmark's for the task, else the loader's. What the tasks need from the hub is fetched here, once."""
    if self.resolve is not None:
      source = self.resolve(source, list(tasks), **options)

    def load(task: str) -> RetrievalDataset:
      dataset = self.load_task(source, task, **options)
      default = self.instructions.get(task, dataset.instruction)
      dataset.instruction = default if instruction is None else instruction
      return dataset

    return load


@dataclasses.dataclass(frozen=True)
class DatasetDirectory:
  """`--dataset DIR`: one BEIR-layout directory scored alone; its RESULTS.json goes to --output, its run to
  --run-out, its judgments are qrels/{--split}.tsv."""

  name: str  # its flag
  load: Callable[..., RetrievalDataset]  # (directory, split) -> the dataset
  max_length: int  # max tokens per text when --max-length is not given: the encode default
  help: str


DATASET = DatasetDirectory(
    name="dataset", load=load_beir, max_length=512,
    help="BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv (a directory or gs://...)")

BRIGHT = Benchmark(
    name="bright", display_name="BRIGHT", tasks=bright.TASKS, load_task=bright.load_bright_task, max_length=8192,
    hub_id=bright.HUB_ID, instructions=BRIGHT_INSTRUCTIONS, resolve=bright.bright_root,
    help=f"BRIGHT: a directory in the layout of the hub's {bright.HUB_ID} (examples/, documents/), or that hub id "
         "when online",
    options=(Option("long_documents", help="BRIGHT's long-document setting (long_documents, gold_ids_long)",
                    display_name="BRIGHT (long documents)"),))

R2MED = Benchmark(
    name="r2med", display_name="R2MED", tasks=r2med.TASKS, load_task=r2med.load_r2med_task, max_length=512,
    hub_id=r2med.HUB_ORG, instructions=r2med.INSTRUCTIONS,
    help=f"R2MED: a directory with one folder per task, or the hub org {r2med.HUB_ORG} when online")

# In the order of the `rejax eval` flags.
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (BRIGHT, R2MED)}


def benchmark_options() -> dict[str, Option]:
  """Every benchmark's options by name, each once (benchmarks sharing an option name share its flag)."""
  options: dict[str, Option] = {}
  for benchmark in BENCHMARKS.values():
    for option in benchmark.options:
      options.setdefault(option.name, option)
  return options


def flags_taking(option: str) -> list[str]:
  """The flags of the benchmarks that have the option named `option`."""
  return [b.flag for b in BENCHMARKS.values() if any(o.name == option for o in b.options)]


def in_words(items: Sequence[str], conjunction: str = "and") -> str:
  """`a`, `a and b`, `a, b and c`: items as a sentence lists them."""
  if len(items) < 2:
    return "".join(items)
  return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"
