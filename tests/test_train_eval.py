"""`rejax train` with a dev evaluation (`config.eval.*`), as a user runs it (subprocesses, configs/tiny.py): the
figures logged at a step are what `rejax eval` gives that step's export, the best checkpoint outlives the
rotation and a resume and is what the run exports, a killed run resumes to the same figures, and bad eval
settings are one-line errors naming the key.

The dev set is 8 biology posts of the training fixture with 4 positives and 4 negatives each, judged on the
negatives: training pushes those down, so the figures mostly fall and the best checkpoint is an early one
(one the latest-checkpoint rotation would delete).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.processes import kill_when, run_processes
from tests.test_train_run import MESH_222, ROOT, STEPS, _free_port, env_with, exported_weights, run, train_cmd

CKPT_EVERY = 4  # test_train_run's BASE: 12 steps, a checkpoint every 4
METRIC = "mrr@100"
FIGURES = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map")
EVAL = ["--config.keep_checkpoints=1", "--config.eval.every=2", "--config.eval.max_length=64",
        "--config.eval.batch_size=16", f"--config.eval.metric={METRIC}", "--config.eval.keep_best=true",
        "--config.eval.export_best=true"]


def write_dev_set(root: pathlib.Path) -> pathlib.Path:
  """A BEIR directory from the first 8 biology records of the training fixture, qrels on their negatives."""
  records = [json.loads(line) for line in (ROOT / "sample_data/reason_embed/biology-formatted.jsonl").open()][:8]
  (root / "qrels").mkdir(parents=True)
  corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
  for i, record in enumerate(records):
    queries.append({"_id": f"q{i}", "text": record["query"]})
    for kind in ("pos", "neg"):
      for j, passage in enumerate(record[kind][:4]):
        corpus.append({"_id": f"d{i}-{kind}{j}", "title": "", "text": passage})
        if kind == "neg":
          qrels.append(f"q{i}\td{i}-{kind}{j}\t1")
  (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
  (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
  (root / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
  return root


def eval_cmd(workdir: pathlib.Path, dev: pathlib.Path) -> list[str]:
  return train_cmd(workdir, *EVAL, f"--config.eval.dataset={dev}")


def figures(workdir: pathlib.Path) -> dict[int, dict[str, float]]:
  """step -> the eval figures logged with it (without eval/seconds), for the steps that have them."""
  out = {}
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    record = json.loads(line)
    found = {k[len("eval/"):]: v for k, v in record.items() if k.startswith("eval/") and k != "eval/seconds"}
    if found:
      out[record["step"]] = found
  return out


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def dev_set(tmp_path_factory) -> pathlib.Path:
  return write_dev_set(tmp_path_factory.mktemp("dev") / "dev")


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory, dev_set) -> pathlib.Path:
  """The uninterrupted run on one device: eval every 2 steps, the best checkpoint kept and exported."""
  workdir = tmp_path_factory.mktemp("eval_run") / "run"
  run(eval_cmd(workdir, dev_set), devices=1)
  return workdir


@pytest.fixture(scope="module")
def best_step(eval_run) -> int:
  """The checkpoint step with the highest logged eval.metric (the earliest of equals)."""
  logged = figures(eval_run)
  candidates = range(CKPT_EVERY, STEPS + 1, CKPT_EVERY)
  return max(candidates, key=lambda s: (logged[s][METRIC], -s))


@pytest.fixture(scope="module")
def best_export(eval_run, best_step, tmp_path_factory) -> pathlib.Path:
  """`rejax export --step BEST` of the run."""
  out = tmp_path_factory.mktemp("export") / f"step{best_step}"
  run([sys.executable, "-m", "rejax.cli", "export", "--workdir", str(eval_run), "--step", str(best_step),
       "--output", str(out)], devices=1)
  return out


def test_every_evaluated_step_is_logged_once_with_its_figures(eval_run):
  steps = [json.loads(line)["step"] for line in (eval_run / "metrics.jsonl").read_text().splitlines()]
  assert steps == list(range(1, STEPS + 1))
  assert sorted(figures(eval_run)) == list(range(2, STEPS + 1, 2))


def test_in_training_figures_equal_rejax_eval_of_that_steps_export(eval_run, dev_set, best_step, best_export,
                                                                   tmp_path):
  results = tmp_path / "RESULTS.json"
  run([sys.executable, "-m", "rejax.cli", "eval", "--model", str(best_export), "--dataset", str(dev_set), "--output",
       str(results), "--max-length", "64", "--batch-size", "16", "--cache-dir", str(tmp_path / "cache")], devices=1)
  offline = json.loads(results.read_text())
  logged = figures(eval_run)[best_step]
  for name in FIGURES:
    assert logged[name] == pytest.approx(offline[name], abs=1e-6), name


def test_the_exports_model_card_parses_and_carries_that_steps_figures(eval_run, best_step, best_export):
  """README.md is a model card huggingface_hub parses (metadata, then the body), with the recipe of the run, the
  prompts it was trained with, and the dev evaluation's figures of the exported step as metrics.jsonl has them."""
  from huggingface_hub import ModelCard

  card = ModelCard.load(best_export / "README.md")
  assert (card.data.library_name, card.data.pipeline_tag) == ("sentence-transformers", "sentence-similarity")
  assert card.data.base_model is None  # a random model: no hub id to name
  assert f"| steps | {best_step} of {STEPS} |" in card.text
  prompts = json.loads((best_export / "config_sentence_transformers.json").read_text())["prompts"]
  for name in prompts:
    assert f"| {name} |" in card.text, name
  for name, value in figures(eval_run)[best_step].items():
    assert f"| {name} | {value:.4f} |" in card.text, name


def test_best_checkpoint_outlives_rotation_and_is_exported(eval_run, best_step, best_export):
  assert best_step < STEPS, "the dev set no longer makes an early checkpoint best: the rotation goes untested"
  assert checkpoint_steps(eval_run) == [best_step, STEPS]  # keep_checkpoints=1: the latest, and the best
  saved = json.loads((eval_run / "checkpoints" / str(best_step) / "metrics" / "metrics").read_text())
  assert saved[f"eval/{METRIC}"] == pytest.approx(figures(eval_run)[best_step][METRIC], abs=1e-12)
  end_of_run, best = exported_weights(eval_run / "export"), exported_weights(best_export)
  assert end_of_run.keys() == best.keys()
  for name in best:
    np.testing.assert_array_equal(end_of_run[name], best[name], err_msg=name)


@pytest.mark.slow  # ~2 min; tests/test_train_run.py's kill -9 resume runs by default
def test_killed_run_resumes_to_the_figures_and_best_of_an_uninterrupted_run(eval_run, dev_set, tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.Popen(eval_cmd(workdir, dev_set), env=env_with(1), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  kill_when(proc, lambda: (workdir / "checkpoints" / str(CKPT_EVERY)).is_dir())  # the first checkpoint is complete
  assert not (workdir / "export").exists()
  resumed = run(eval_cmd(workdir, dev_set), devices=1)  # the same command again
  assert "resuming at step" in resumed.stderr

  reference, after = figures(eval_run), figures(workdir)
  assert sorted(after) == sorted(reference)
  for step in reference:
    assert after[step] == pytest.approx(reference[step], abs=1e-6), step
  assert checkpoint_steps(workdir) == checkpoint_steps(eval_run)  # the best, saved before the kill, was kept
  ours, theirs = exported_weights(workdir / "export"), exported_weights(eval_run / "export")
  for name in theirs:
    np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.slow  # ~2 min; `make test-slow`
def test_two_processes_of_4_devices_log_the_one_process_8_device_figures(dev_set, tmp_path):
  one = tmp_path / "one"
  run(eval_cmd(one, dev_set) + MESH_222, devices=8)
  two = tmp_path / "two"
  coordinator = f"127.0.0.1:{_free_port()}"
  run_processes([eval_cmd(two, dev_set) + [*MESH_222, "--coordinator", coordinator, "--num-processes", "2",
                                           "--process-id", str(i)] for i in range(2)], env=env_with(4), cwd=ROOT)
  reference, multi = figures(one), figures(two)
  assert sorted(multi) == sorted(reference)
  for step in reference:
    assert multi[step] == pytest.approx(reference[step], abs=1e-6), step
  assert checkpoint_steps(two) == checkpoint_steps(one)


EVAL_CONFIG_ERRORS = [
  (["--config.eval.every=-1"], "eval.every=-1: must be >= 0"),
  (["--config.eval.every=2", "--config.eval.dataset=/no/such/dev"],
   "eval.dataset=/no/such/dev: missing corpus.jsonl, queries.jsonl, qrels/test.tsv"),
  (["--config.eval.export_best=true"], "eval.export_best=True needs eval.keep_best=True"),
  (["--config.eval.metric=ndcg@5"], "eval.metric='ndcg@5': expected one of ndcg@10, "),
  (["--config.eval.keep_best=true"], "eval.keep_best=True needs eval.every > 0"),
  (["--config.eval.every=3", "--config.eval.keep_best=true", "DEV"],
   "ckpt_every=10 is not a multiple of eval.every=3"),
]


@pytest.mark.parametrize("overrides,message", EVAL_CONFIG_ERRORS)
def test_bad_eval_config_is_a_one_line_error_naming_the_key(overrides, message, dev_set, tmp_path):
  from rejax.cli import main

  overrides = [f"--config.eval.dataset={dev_set}" if o == "DEV" else o for o in overrides]
  with pytest.raises(SystemExit) as exit_info:  # mesh.tensor=8: the test process's 8 devices
    main(["train", "--config", str(ROOT / "configs" / "tiny.py"), "--workdir", str(tmp_path / "w"),
          "--config.mesh.tensor=8", *overrides])
  text = str(exit_info.value)
  assert message in text and "\n" not in text
  assert not (tmp_path / "w").exists()  # failed before anything was loaded or written
