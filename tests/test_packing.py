"""Packed sequences: the packer's layout, and packed == padded for the decoder, the train step (with and
without GradCache, on an 8-device mesh) and the Encoder, on mixed-length batches of the fixture's real texts."""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import optax
import pytest

from rejax.data import text
from rejax.data.convert import convert
from rejax.data.packing import first_fit_decreasing, max_segments, pack, row_ladder
from rejax.data.pipeline import PipelineConfig, make_dataset
from rejax.models import config_from_hf_dict, init_decoder
from rejax.models.pooling import embed, embed_packed
from rejax.sharding import make_mesh, use_mesh
from rejax.train import distributed
from rejax.losses import RIInfoNCE
from rejax.train.state import init_train_state, jit_train_step
from rejax.train.step import make_train_step, sequence_embeddings
from tests.test_train_step import flat

FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "sample_data" / "reason_embed"
TINY = dict(model_type="qwen3", vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-6)


def naive_first_fit_decreasing(lengths, capacity, max_per_row):
  """The textbook algorithm on Python lists: sort longest first (stable), put each into the first bin it fits."""
  bins = []  # [used tokens, members]
  where = {}
  for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
    for r, (used, members) in enumerate(bins):
      if used + lengths[i] <= capacity and len(members) < max_per_row:
        break
    else:
      r = len(bins)
      bins.append([0, []])
    where[i] = (r, bins[r][0])
    bins[r][0] += lengths[i]
    bins[r][1].append(i)
  return where


def test_first_fit_decreasing_is_the_textbook_algorithm():
  rng = np.random.default_rng(0)
  for _ in range(20):
    lengths = rng.integers(1, 65, rng.integers(1, 40))
    row, offset = first_fit_decreasing(lengths, 64, 4)
    want = naive_first_fit_decreasing(list(lengths), 64, 4)
    assert [(int(r), int(o)) for r, o in zip(row, offset)] == [want[i] for i in range(len(lengths))]


def test_row_ladder():
  assert [row_ladder(n, 1, 1000) for n in (1, 7, 8, 9, 11, 15, 17, 33, 100)] == [1, 7, 8, 10, 12, 16, 20, 40, 112]
  assert [row_ladder(n, 4, 32) for n in (1, 4, 5, 8, 9, 17, 32)] == [4, 4, 8, 8, 12, 20, 32]
  assert row_ladder(10, 4, 12) == 12  # capped at the sequences, rounded up to the multiple
  assert row_ladder(3, 8, 4) == 8  # never fewer rows than the multiple


def test_pack_keeps_every_sequence_whole_and_findable():
  rng = np.random.default_rng(1)
  n, t = 37, 64
  lengths = rng.integers(1, t + 1, n)
  ids = rng.integers(1, 1000, (n, t)).astype(np.int32)
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.int32)
  packed = pack(ids * mask, mask, pad_id=0, row_multiple=2)
  s = max_segments(t)
  assert packed.last.shape == (packed.rows, s) and packed.rows % 2 == 0 and packed.rows < n
  for i in range(n):
    r, slot = divmod(int(packed.index[i]), s)
    end = int(packed.last[r, slot]) + 1
    start = end - lengths[i]
    np.testing.assert_array_equal(packed.ids[r, start:end], ids[i, : lengths[i]])
    assert (packed.segments[r, start:end] == slot + 1).all()
  assert sorted(packed.index.tolist()) == sorted(set(packed.index.tolist()))  # one slot per sequence
  assert (packed.segments > 0).sum() == lengths.sum()  # every real token once, nothing else
  assert ((packed.segments > 0) == (packed.ids > 0)).all()


def test_pack_refuses_left_padding_and_empty_rows():
  mask = np.array([[0, 1, 1], [1, 1, 0]], np.int32)
  with pytest.raises(ValueError, match="right-padded"):
    pack(mask, mask, 0)
  with pytest.raises(ValueError, match="row 1 has no tokens"):
    pack(np.ones((2, 3), np.int32), np.array([[1, 0, 0], [0, 0, 0]]), 0)


@pytest.fixture(scope="module")
def real_batches(tmp_path_factory, qwen3_tokenizer_dir):
  """Pipeline batches of the fixture's texts (Qwen3 tokenizer, lengths up to 128/256), ids folded into TINY's
  vocabulary: real mixed lengths for a tiny model."""
  data = tmp_path_factory.mktemp("pack") / "data"
  convert([str(FIXTURE / "*.jsonl")], data)
  settings = {"biology": (8, 4), "earth_science": (8, 4), "economics": (8, 4)}
  config = PipelineConfig(str(data), str(qwen3_tokenizer_dir), settings, max_query_length=128,
                          max_passage_length=256, min_bucket=16, seed=3)
  batches = list(iter(make_dataset(config, num_steps=2)))
  for batch in batches:
    for name in ("query", "passage", "reason"):
      ids, mask = batch[f"{name}_ids"], batch[f"{name}_mask"]
      batch[f"{name}_ids"] = np.where(mask > 0, ids % (TINY["vocab_size"] - 1) + 1, 0).astype(np.int32)
  return batches


def test_packed_embeddings_equal_padded(real_batches):
  model = init_decoder(config_from_hf_dict(TINY), seed=0)
  for batch in real_batches:
    for name in ("query", "passage"):
      ids, mask = batch[f"{name}_ids"], batch[f"{name}_mask"]
      packed = pack(ids, mask, 0)
      if name == "passage":
        assert packed.rows < len(ids)  # the texts are of mixed lengths: packing saves rows
      want = np.asarray(embed(model, ids, mask))
      got = np.asarray(sequence_embeddings(embed_packed(model, packed.ids, packed.segments, packed.last),
                                           packed.index))
      assert np.min(np.sum(want * got, axis=-1)) >= 0.99999


@pytest.mark.parametrize("chunk", [pytest.param(None, marks=pytest.mark.slow), 4])  # without GradCache: test-slow
def test_packed_train_step_equals_padded_on_8_devices(real_batches, chunk):
  """One SGD step with lr 1 (update = -gradient) from the same initial parameters, per real batch, on a data 2 x
  fsdp 2 x tensor 2 mesh: loss rtol 1e-5 and gradients at test_train_step's tolerance, with the batch padded or
  packed (to_global_batch's two outputs). Each batch starts from the initial state, so the comparison is of
  gradients at one point, not of trajectories that drift apart by rounding."""
  mesh = make_mesh(2, 2, 2)
  loss_cfg = RIInfoNCE(group_size=4, ri_start_step=0)
  tx = optax.sgd(1.0)
  results = {}
  with use_mesh(mesh):
    for packed in (False, True):
      step = None
      for i, batch in enumerate(real_batches):
        model = init_decoder(config_from_hf_dict(TINY), seed=0, mesh=mesh)  # afresh: the step donates the state
        graphdef, state = init_train_state(model, tx)
        step = step or jit_train_step(make_train_step(graphdef, tx, loss_cfg, grad_cache_chunk=chunk), state)
        initial = flat(state.trainable)
        host = {k: v for k, v in batch.items() if k.endswith(("_ids", "_mask"))}
        global_batch = distributed.to_global_batch(host, mesh, 0, pack_rows=np.lcm(4, chunk or 1) if packed else None)
        assert ("passage_segments" in global_batch) == packed
        state, metrics = step(state, global_batch, jax.random.key(0))
        results[packed, i] = float(metrics["loss"]), {k: v - initial[k] for k, v in flat(state.trainable).items()}
  for i in range(len(real_batches)):
    (want_loss, want), (loss, got) = results[False, i], results[True, i]
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    for k in want:
      scale = np.abs(want[k]).max()
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5 * scale, err_msg=f"batch {i}: {k}")


def test_encoder_packed_equals_padded(real_batches, qwen3_tokenizer_dir):
  from rejax.eval.encode import Encoder

  tokenizer = text.load_tokenizer(qwen3_tokenizer_dir)
  model = init_decoder(config_from_hf_dict({**TINY, "vocab_size": len(tokenizer)}), seed=0)  # pads with its pad id
  batch = real_batches[0]
  token_ids = [list(row[m > 0]) for row, m in zip(batch["passage_ids"], batch["passage_mask"])]
  padded = Encoder(model, tokenizer, batch_size=8, pack=False).encode_tokens(token_ids, progress=False)
  packed = Encoder(model, tokenizer, batch_size=8, pack=True).encode_tokens(token_ids, progress=False)
  assert np.min(np.sum(padded * packed, axis=-1)) >= 0.99999
