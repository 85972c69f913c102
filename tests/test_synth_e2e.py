"""`synth run --config configs/synth/demo.py` for real: SmolLM2-135M-Instruct (transformers backend, CPU)
over a handful of CACM documents, mined with rejax's Encoder, read back by the rejax data pipeline."""

from __future__ import annotations

import json
import pathlib
import time

import pytest

from synth.summary import StageSummary

ROOT = pathlib.Path(__file__).resolve().parent.parent
# A handful of documents and short answers: 2 CPU cores decode SmolLM2 at a few steps per second.
SMALL = ["--config.domains.cacm.max_documents=100", "--config.sources.max_per_domain=4", "--config.mine.keep=6",
         "--config.mine.top_k=20", "--config.embedder.max_length=128", "--config.generate.sampling.max_tokens=48",
         "--config.annotate.sampling.max_tokens=48", "--config.reason.sampling.max_tokens=48"]


@pytest.mark.slow
def test_demo_config_end_to_end_on_cacm(smollm2_dir, tmp_path, monkeypatch):
  import tensorflow_datasets as tfds

  from rejax.data.pipeline import PipelineConfig, make_dataset
  from rejax.data.records import from_example
  from synth.cli import main
  from synth.units import read_jsonl

  monkeypatch.chdir(ROOT)  # the demo config names the CACM fixture relative to the repository root
  work = tmp_path / "demo"
  start = time.perf_counter()
  rc = main(["run", "--config", "configs/synth/demo.py", "--no-progress", f"--config.workdir={work}",
             *SMALL, f"--config.backends.generator.model={smollm2_dir}",
             f"--config.backends.annotator.model={smollm2_dir}", f"--config.embedder.model={smollm2_dir}"])
  seconds = time.perf_counter() - start
  assert rc == 0
  summaries = {s: StageSummary.load(work / s / "cacm.summary.json") for s in
               ("generate", "mine", "annotate", "reason", "format")}
  print(f"\nsynth demo e2e: {seconds:.0f} s")
  for summary in summaries.values():
    print(summary.line())

  records = read_jsonl(work / "format" / "cacm-formatted.jsonl")
  assert summaries["format"].n_out == len(records) > 0
  assert summaries["generate"].n_out >= 2 and summaries["annotate"].n_in >= 6
  source = tfds.builder_from_directory(str(work / "arrayrecord")).as_data_source()["cacm"]
  assert [from_example(source[i]) for i in range(len(source))] == records
  for record in records:
    assert record["pos"] and record["neg"] and record["reasoning_query"]
    assert min(record["pos_scores"]) >= 3 and max(record["neg_scores"]) <= 2

  pipeline = PipelineConfig(data_dir=str(work / "arrayrecord"), tokenizer_dir=str(smollm2_dir),
                            domain_settings={"cacm": (1, 4)}, max_query_length=128, max_passage_length=128)
  batch = next(iter(make_dataset(pipeline, num_steps=1)))
  assert batch["query_ids"].shape[0] == 1 and batch["passage_ids"].shape[0] == 4
  (work / "e2e.json").write_text(json.dumps({"seconds": seconds, "records": len(records)}))
