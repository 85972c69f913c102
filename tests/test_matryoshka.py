"""Matryoshka embeddings: the loss at several prefix sizes equals its definition in numpy (sentence-transformers'
MatryoshkaLoss: the inner loss of each truncated, renormalised prefix, weighted and summed), and a prefix taken by
`rejax encode --dim` equals sentence-transformers' `truncate_dim` on the same export."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rejax.losses import Matryoshka, make_loss
from tests.test_losses import f32, numpy_infonce, numpy_ri_infonce, reasoning_queries, unit_rows


def numpy_prefix(x, dim):
  x = x[:, :dim]
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_matryoshka_loss_is_the_weighted_sum_of_the_inner_loss_at_each_prefix():
  rng = np.random.default_rng(11)
  batch, group, tau, dims, weights = 4, 4, 0.05, (32, 16, 8), (1.0, 0.5, 0.25)
  q, p = unit_rows(rng, batch, 32), unit_rows(rng, batch * group, 32)
  q_reason = reasoning_queries(rng, p, group)
  settings = {"kind": "infonce", "temperature": tau, "matryoshka_dims": dims, "matryoshka_weights": weights}
  loss, scalars = jax.jit(make_loss(settings))(*f32(q, p), None, jnp.int32(0))
  per_dim = {d: numpy_infonce(numpy_prefix(q, d), numpy_prefix(p, d), group, tau).mean() for d in dims}
  np.testing.assert_allclose(loss, sum(w * per_dim[d] for d, w in zip(dims, weights)), rtol=1e-5)
  for d in dims:
    np.testing.assert_allclose(scalars[f"loss_dim_{d}"], per_dim[d], rtol=1e-5)

  ri = make_loss({**settings, "kind": "ri_infonce", "ri_start_step": 0, "ri_clamp_max": 5.0})
  assert ri.uses_reasoning and ri.reasoning_pass(0)
  loss, _ = jax.jit(ri)(*f32(q, p, q_reason), jnp.int32(0))
  want = sum(w * numpy_ri_infonce(numpy_prefix(q, d), numpy_prefix(p, d), numpy_prefix(q_reason, d), group, tau,
                                  5.0)[0] for d, w in zip(dims, weights))
  np.testing.assert_allclose(loss, want, rtol=1e-5)

  # The gradient reaches only the numbers a prefix uses: with one size of 8, the rest of q gets none.
  only_8 = make_loss({"kind": "infonce", "temperature": tau, "matryoshka_dims": (8,)})
  grad = jax.grad(lambda q_: only_8(q_, jnp.asarray(p, jnp.float32), None, 0)[0])(jnp.asarray(q, jnp.float32))
  assert np.all(np.asarray(grad)[:, 8:] == 0) and np.any(np.asarray(grad)[:, :8] != 0)


@pytest.mark.parametrize("settings,message", [
  ({"matryoshka_dims": (64, 64)}, "loss.matryoshka_dims=(64, 64): expected distinct sizes >= 1"),
  ({"matryoshka_dims": (64, 0)}, "loss.matryoshka_dims=(64, 0): expected distinct sizes >= 1"),
  ({"matryoshka_dims": (64, 32), "matryoshka_weights": (1.0,)},
   "loss.matryoshka_weights=(1.0,): expected one weight > 0 per size of loss.matryoshka_dims=(64, 32)"),
])
def test_bad_matryoshka_settings_name_their_key(settings, message):
  with pytest.raises(ValueError) as error:
    make_loss({"kind": "infonce", **settings})
  assert str(error.value).startswith(message)


def test_a_size_beyond_the_model_is_refused_before_any_weight_is_read():
  from rejax.errors import ConfigError
  from rejax.models import config_from_hf_dict
  from rejax.train.components import check_against_model
  from rejax.train.recipe import paper_config
  from tests.test_train_step import TINY

  config = paper_config()
  config.loss.matryoshka_dims = (64, 16)
  with pytest.raises(ConfigError, match=r"^loss.matryoshka_dims=\(64, 16\): the model's embeddings have 32 numbers"):
    check_against_model(config_from_hf_dict(TINY), config)
  assert isinstance(make_loss(config.loss), Matryoshka)


def test_encode_dim_equals_sentence_transformers_truncate_dim(tiny_model_factory, tmp_path):
  """An export records the trained sizes; `rejax encode --dim 16` (CLI) and sentence-transformers' truncate_dim=16
  give the same vectors (cosine >= 0.9999, as the full embeddings), and --dim beyond the model is one line."""
  from sentence_transformers import SentenceTransformer

  from rejax.hf.export import export_model
  from rejax.hf.load import load_decoder
  from tests.test_parity import TEXTS

  model_dir, _ = tiny_model_factory("qwen3_tied")
  model, cfg = load_decoder(model_dir)
  out = export_model(model, tmp_path / "export", base_dir=model_dir, max_seq_length=40, matryoshka_dims=(16, 64))
  assert json.loads((out / "config_sentence_transformers.json").read_text())["matryoshka_dims"] == [64, 16]
  st = SentenceTransformer(str(out), device="cpu", truncate_dim=16)
  want = st.encode(TEXTS, normalize_embeddings=True)
  assert want.shape == (len(TEXTS), 16)
  assert SentenceTransformer(str(out), device="cpu").encode(TEXTS).shape[1] == cfg.hidden_size  # default: whole

  (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
  cmd = [sys.executable, "-m", "rejax.cli", "encode", "--model", str(out), "--input", str(tmp_path / "in.jsonl"),
         "--max-length", "40"]
  subprocess.run(cmd + ["--output", str(tmp_path / "o.npy"), "--dim", "16"], check=True, capture_output=True)
  got = np.load(tmp_path / "o.npy")
  assert got.shape == want.shape and (got * want).sum(-1).min() >= 0.9999
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
  bad = subprocess.run(cmd + ["--output", str(tmp_path / "b.npy"), "--dim", "65"], capture_output=True, text=True)
  assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == (
      "rejax encode: error: --dim 65: the model's embeddings have 64 numbers; give 1..64")


@pytest.mark.slow  # ~1 min: a 4-step tiny run; the parts are checked by the tests above
def test_a_matryoshka_run_logs_each_size_and_exports_them(tmp_path):
  """`rejax train` with loss.matryoshka_dims: each step logs loss_dim_{d}, the loss is their weighted sum, and the
  export records the sizes."""
  from tests.test_train_run import run, train_cmd

  workdir = tmp_path / "run"
  run(train_cmd(workdir, "--config.total_steps=4", "--config.loss.matryoshka_dims=(64, 16)",
                "--config.loss.matryoshka_weights=(1.0, 0.5)"), devices=1)
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  for r in records:
    np.testing.assert_allclose(r["loss"], r["loss_dim_64"] + 0.5 * r["loss_dim_16"], rtol=1e-5)
  exported = json.loads((workdir / "export" / "config_sentence_transformers.json").read_text())
  assert exported["matryoshka_dims"] == [64, 16]


def test_eval_dim_keeps_its_own_cache_entries_and_searches_the_prefixes(tiny_model_factory, tmp_path):
  """`rejax eval --dim 16` (dense_run with an Encoder of dim 16) searches the renormalised 16-number prefixes of the
  whole embeddings, and its cached corpus embeddings never stand in for the whole ones (or the reverse)."""
  from rejax.eval.beir import RetrievalDataset
  from rejax.eval.encode import Encoder
  from rejax.eval.retrieve import dense_run
  from rejax.eval.search import build_index, search
  from tests.test_parity import TEXTS

  model_dir, _ = tiny_model_factory("qwen3_tied")
  corpus = {f"d{i}": text for i, text in enumerate(TEXTS)}
  queries = {"q0": TEXTS[0][:20], "q1": TEXTS[-1][:20]}
  dataset = RetrievalDataset(name="toy", corpus=corpus, queries=queries, qrels={"q0": {"d0": 1}, "q1": {"d1": 1}})
  whole = Encoder.from_pretrained(model_dir, max_length=40, batch_size=4)
  prefix = Encoder.from_pretrained(model_dir, max_length=40, batch_size=4, dim=16)
  cache = tmp_path / "cache"
  run_whole = dense_run(dataset, whole, model_dir, k=3, instruction=None, cache_dir=cache)
  run_prefix = dense_run(dataset, prefix, model_dir, k=3, instruction=None, cache_dir=cache)
  assert len(list(cache.glob("*.npy"))) == 2  # one corpus entry each
  assert dense_run(dataset, whole, model_dir, k=3, instruction=None, cache_dir=cache) == run_whole  # cache hit

  docs = whole.encode(list(corpus.values()), progress=False)
  qs = whole.encode(list(queries.values()), progress=False)
  want = search(build_index(numpy_prefix(docs, 16), "flat"), list(corpus), numpy_prefix(qs, 16), list(queries), 3,
                dataset.excluded)
  assert {q: list(hits) for q, hits in run_prefix.items()} == {q: list(hits) for q, hits in want.items()}
  for q in want:
    np.testing.assert_allclose(list(run_prefix[q].values()), list(want[q].values()), rtol=1e-5, atol=1e-6)
