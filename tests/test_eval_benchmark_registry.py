"""A benchmark is one entry of rejax.eval.benchmarks.BENCHMARKS: registered here (two tasks over the BEIR-layout
sample collections), it is a `rejax eval` flag that runs end to end with BM25, each task's figures and run equal
`rejax eval --dataset` on that task's directory, and the help and the messages name it."""

from __future__ import annotations

import json
import pathlib

import pytest

from rejax.cli import build_parser, main
from rejax.eval import benchmarks
from rejax.eval.beir import load_beir

SAMPLE_DATA = pathlib.Path(__file__).resolve().parents[1] / "sample_data"
TASKS = ("stackexchange", "cacm")
CACM_INSTRUCTION = "Given a query, retrieve relevant CACM abstracts."


def load_sample_task(source: str | pathlib.Path, task: str):
  """One task of the test benchmark: the BEIR directory source/task."""
  return load_beir(pathlib.Path(source) / task)


SAMPLES = benchmarks.Benchmark(
    name="samples", display_name="Samples", tasks=TASKS, load_task=load_sample_task, max_length=64,
    hub_id="rejax/samples", help="the sample collections: a directory with one BEIR folder per task",
    instructions={"cacm": CACM_INSTRUCTION})


@pytest.fixture
def samples(monkeypatch, tmp_path) -> pathlib.Path:
  """SAMPLES registered, and its directory: one folder per task, each a link to the sample collection."""
  monkeypatch.setitem(benchmarks.BENCHMARKS, SAMPLES.name, SAMPLES)
  root = tmp_path / "samples"
  root.mkdir()
  for task in TASKS:
    (root / task).symlink_to(SAMPLE_DATA / task)
  return root


def without_timing(results: dict) -> dict:
  return {name: value for name, value in results.items() if name != "seconds"}


def test_registered_benchmark_runs_like_each_task_with_dataset(samples, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # the default output: results/samples/bm25/RESULTS.json
  main(["eval", "--model", "bm25", "--samples", str(samples)])
  output = tmp_path / "results" / "samples" / "bm25"
  results = json.loads((output / "RESULTS.json").read_text())
  assert results["benchmark"] == "Samples" and results["tasks"] == list(TASKS)
  for task in TASKS:
    argv = ["eval", "--model", "bm25", "--dataset", str(SAMPLE_DATA / task), "--output", str(tmp_path / f"{task}.json"),
            "--run-out", str(tmp_path / f"{task}.trec")]
    main(argv + (["--instruction", CACM_INSTRUCTION] if task == "cacm" else []))
    alone = json.loads((tmp_path / f"{task}.json").read_text())
    assert without_timing(results["per_task"][task]) == without_timing(alone)
    assert (output / "runs" / f"{task}.trec").read_text() == (tmp_path / f"{task}.trec").read_text()
  assert results["per_task"]["cacm"]["instruction"] == CACM_INSTRUCTION
  assert results["per_task"]["stackexchange"]["instruction"] is None
  assert "| metric | stackexchange | cacm | Average |" in (output / "RESULTS.md").read_text()
  assert "| bm25 |" in (tmp_path / "results" / "samples" / "table.md").read_text()


def test_registered_benchmark_sets_its_max_length(samples, tmp_path):
  args = build_parser().parse_args(["eval", "--model", "bm25", "--samples", str(samples), "--tasks", "stackexchange",
                                    "--output", str(tmp_path / "RESULTS.json")])
  args.run(args)  # what main runs
  assert args.max_length == SAMPLES.max_length
  assert json.loads((tmp_path / "RESULTS.json").read_text())["tasks"] == ["stackexchange"]


def test_help_and_messages_name_the_registered_benchmark(samples, tmp_path, capsys):
  with pytest.raises(SystemExit):
    main(["--help"])
  assert "a BEIR dataset, BRIGHT, R2MED or Samples" in " ".join(capsys.readouterr().out.split())
  with pytest.raises(SystemExit):
    main(["eval", "--help"])
  usage = " ".join(capsys.readouterr().out.split())
  assert f"--samples SAMPLES {SAMPLES.help}" in usage and "results/{bright,r2med,samples}/MODEL" in usage
  beir = ["eval", "--model", "bm25", "--dataset", str(samples / "cacm"), "--output", str(tmp_path / "R.json")]
  with pytest.raises(SystemExit, match="--tasks applies to --bright, --r2med and --samples only"):
    main([*beir, "--tasks", "cacm"])
  with pytest.raises(SystemExit, match="--long-documents applies to --bright only"):
    main(["eval", "--model", "bm25", "--samples", str(samples), "--long-documents"])
  with pytest.raises(SystemExit, match="--samples needs --model"):
    main(["eval", "--samples", str(samples)])
  with pytest.raises(SystemExit, match="unknown Samples task.s. cacn; the tasks are stackexchange, cacm"):
    main(["eval", "--model", "bm25", "--samples", str(samples), "--tasks", "cacn"])


@pytest.mark.parametrize("benchmark", benchmarks.BENCHMARKS.values(), ids=lambda b: b.name)
def test_each_benchmark_names_its_hub_id_and_instructs_every_task(benchmark):
  assert benchmark.hub_id in benchmark.help
  assert tuple(benchmark.instructions) == benchmark.tasks
