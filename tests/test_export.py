"""An export loads in transformers and sentence-transformers and computes what rejax computes."""

import json
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors import safe_open

from rejax.data.text import format_query, load_tokenizer, pad_batch, tokenize
from rejax.eval.encode import Encoder
from rejax.hf.export import BRIGHT_INSTRUCTIONS, export_model
from rejax.hf.load import load_decoder
from rejax.hf.save import save_safetensors
from rejax.models import LoRAConfig, merge_lora
from rejax.sharding import make_mesh, use_mesh

BIOLOGY = BRIGHT_INSTRUCTIONS["biology"]
TEXTS = [
    "Why do some cells divide faster than others, and what limits it?",
    "Short.",
    "Mitosis is the part of the cell cycle in which replicated chromosomes are separated into two nuclei. " * 3,
    "Le théorème de Pythagore: a² + b² = c² — 直角三角形",
]
MAX_SEQ_LENGTH = 40  # the third text is longer: truncation must keep EOS in both libraries
SHARD_SIZE = "100KB"  # tiny models' layers are ~150 KB: several weight files plus an index
LORA = LoRAConfig(rank=4, alpha=8.0, dropout=0.1)


def perturb_adapters(model, seed: int = 0) -> None:
  """Give every LoRA B a nonzero value (fresh adapters are the identity, so merging would not matter)."""
  rng = np.random.default_rng(seed)
  for path, var in sorted(nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)), key=lambda pv: str(pv[0])):
    if path[-1] == "lora_b":
      value = rng.normal(0, 0.05, var[...].shape).astype(np.float32)
      var[...] = jax.device_put(value, var[...].sharding)


def trained_model(model_dir, lora: bool, mesh=None):
  """The tiny model as a trainer would hold it: loaded, with perturbed adapters when `lora`."""
  model, _ = load_decoder(model_dir, mesh=mesh, lora=LORA if lora else None)
  if lora:
    perturb_adapters(model)
  return model


@pytest.fixture(scope="module")
def exported(tiny_model_factory, tmp_path_factory):
  """`export(name, lora) -> (source dir, in-memory model, export dir)`, cached per (name, lora)."""
  cache = {}

  def export(name: str, lora: bool):
    if (name, lora) not in cache:
      model_dir, _ = tiny_model_factory(name)
      model = trained_model(model_dir, lora)
      out = export_model(model, tmp_path_factory.mktemp(f"export_{name}_{lora}"), base_dir=model_dir,
                         max_seq_length=MAX_SEQ_LENGTH, max_shard_size=SHARD_SIZE)
      cache[name, lora] = model_dir, model, out
    return cache[name, lora]

  return export


def hf_hidden(out, ids, mask) -> np.ndarray:
  from transformers import AutoModel

  hf_model = AutoModel.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
  with torch.no_grad():
    return hf_model(input_ids=torch.tensor(ids, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()


BARE_CLASSES = {"qwen3": "Qwen3Model", "llama": "LlamaModel", "qwen2": "Qwen2Model", "mistral": "MistralModel"}


@pytest.mark.parametrize("name,lora", [
    ("qwen3_tied", False), ("qwen3_tied", True), ("qwen3_untied", True), ("llama31", True), ("qwen2", True),
    ("mistral", False), ("qwen2_bidirectional", False),
    pytest.param("qwen3_untied", False, marks=pytest.mark.slow), pytest.param("llama31", False, marks=pytest.mark.slow),
])
def test_transformers_hidden_states_equal_rejax(exported, name, lora):
  """Exported and re-read by transformers (and by rejax: export_model checks that config.json reads back as the
  model's config), the model computes the same hidden states; the bare class and the family's keys are there."""
  _, model, out = exported(name, lora)
  from transformers import AutoConfig

  config = AutoConfig.from_pretrained(out)
  assert config.architectures == [BARE_CLASSES[model.cfg.model_type]]
  assert getattr(config, "is_causal", True) == model.cfg.causal
  assert getattr(config, "sliding_window", None) == model.cfg.sliding_window
  seqs = tokenize(load_tokenizer(out), [format_query(t, BIOLOGY) for t in TEXTS], 128)
  ids, mask = pad_batch(seqs, max(map(len, seqs)), pad_id=0)
  real = mask.astype(bool)
  hidden = hf_hidden(out, ids, mask)
  merged = np.asarray(merge_lora(model)(jnp.asarray(ids), jnp.asarray(mask)))
  unmerged = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))
  diff_merged = np.abs(hidden - merged)[real].max()
  diff_trained = np.abs(hidden - unmerged)[real].max()
  print(f"{name} {lora=}: max |transformers - rejax merged| = {diff_merged:.2g}, "
        f"- rejax with adapters = {diff_trained:.2g}")
  assert diff_merged <= 1e-5
  assert diff_trained <= 1e-5


@pytest.mark.parametrize("name,lora", [("qwen3_tied", False), ("qwen3_untied", True), ("llama31", True),
                                       ("qwen2", True), ("mistral", False)])
def test_sentence_transformers_encode_equals_rejax_encode(exported, name, lora):
  from sentence_transformers import SentenceTransformer

  model_dir, model, out = exported(name, lora)
  st = SentenceTransformer(str(out), device="cpu")
  ours = Encoder.from_pretrained(out, max_length=MAX_SEQ_LENGTH, batch_size=4)
  trained = Encoder(model, load_tokenizer(model_dir), max_length=MAX_SEQ_LENGTH, batch_size=4)
  queries = {
      "prompt": st.encode(TEXTS, prompt=format_query("", BIOLOGY), batch_size=3),
      "prompt_name": st.encode(TEXTS, prompt_name="biology", batch_size=3),
      "rejax encode": ours.encode(TEXTS, instruction=BIOLOGY, progress=False),
      "in-memory model": trained.encode(TEXTS, instruction=BIOLOGY, progress=False),
  }
  documents = {"st": st.encode(TEXTS, batch_size=3), "rejax": ours.encode(TEXTS, progress=False)}
  reference = queries.pop("rejax encode")
  for what, emb in queries.items():
    cos = (emb * reference).sum(-1).min()
    print(f"{name} {lora=}: min cosine SentenceTransformer/{what} vs rejax encode on the export = {cos:.8f}")
    assert cos >= 0.9999
  assert (documents["st"] * documents["rejax"]).sum(-1).min() >= 0.9999
  assert np.abs(np.linalg.norm(queries["prompt"], axis=-1) - 1).max() <= 1e-5


@pytest.mark.parametrize("name,lora", [("qwen3_tied", False), ("llama31", True)])
def test_exported_tokenizer_gives_rejax_token_ids(exported, name, lora):
  from sentence_transformers import SentenceTransformer

  model_dir, _, out = exported(name, lora)
  texts = [format_query(t, BIOLOGY) for t in TEXTS] + TEXTS + [""]
  reference, exported_tokenizer = load_tokenizer(model_dir), load_tokenizer(out)
  for length in (2, 7, MAX_SEQ_LENGTH, 512):
    want = tokenize(reference, texts, length)
    assert exported_tokenizer(texts, truncation=True, max_length=length)["input_ids"] == want
    assert all(seq[-1] == reference.eos_token_id for seq in want)
  st = SentenceTransformer(str(out), device="cpu")  # what sentence-transformers itself feeds the model
  features = st.preprocess(texts)
  st_ids = [row[m.bool()].tolist() for row, m in zip(features["input_ids"], features["attention_mask"])]
  assert st.max_seq_length == MAX_SEQ_LENGTH
  assert st_ids == tokenize(reference, texts, MAX_SEQ_LENGTH)


def test_prompts_reproduce_query_formatting(exported):
  _, _, out = exported("qwen3_tied", False)
  config = json.loads((out / "config_sentence_transformers.json").read_text())
  assert config["similarity_fn_name"] == "cosine"
  assert set(config["prompts"]) == set(BRIGHT_INSTRUCTIONS)
  for task, instruction in BRIGHT_INSTRUCTIONS.items():
    assert config["prompts"][task] + "why?" == format_query("why?", instruction)
  pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
  assert [k for k, v in pooling.items() if v is True and k.startswith("pooling_mode")] == ["pooling_mode_lasttoken"]


def safetensors_dtypes(out) -> set[str]:
  dtypes = set()
  for file in out.glob("*.safetensors"):
    with safe_open(file, framework="numpy") as f:
      dtypes |= {f.get_slice(k).get_dtype() for k in f.keys()}
  return dtypes


def test_bf16_base_exports_bf16_weights(tiny_model_factory, tmp_path):
  model_dir, _ = tiny_model_factory("qwen3_untied")
  base = tmp_path / "base_bf16"
  shutil.copytree(model_dir, base)
  config = json.loads((base / "config.json").read_text())
  (base / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))
  model = trained_model(model_dir, lora=True)  # fp32 master weights, as in training

  out = export_model(model, tmp_path / "bf16", base_dir=base)
  assert safetensors_dtypes(out) == {"BF16"}
  assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
  merged = dict(nnx.to_flat_state(nnx.state(merge_lora(model), nnx.Param)))
  with safe_open(out / "model.safetensors", framework="numpy") as f:
    saved = f.get_tensor("layers.1.mlp.down_proj.weight")
  expected = np.asarray(merged["layers", "mlp", "down_proj", "kernel"][...][1]).T.astype(ml_dtypes.bfloat16)
  np.testing.assert_array_equal(saved, expected)
  from transformers import AutoModel

  assert AutoModel.from_pretrained(out).dtype == torch.bfloat16  # config.json says so too



def weight_files(out) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in sorted(out.glob("model*"))}


def saved_tensors(out) -> dict[str, np.ndarray]:
  tensors = {}
  for file in out.glob("*.safetensors"):
    with safe_open(file, framework="numpy") as f:
      tensors.update({k: f.get_tensor(k) for k in f.keys()})
  return tensors


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_sharded_model_exports_what_the_unsharded_one_does(exported, tmp_path, lora):
  """Bitwise for plain weights. A merged LoRA kernel may differ by a rounding of A @ B: merge_lora's einsum
  runs on each device's block, and XLA's CPU dot rounds a [in/2, r] x [r, out/2] block differently (measured:
  1.5e-8 on kernels of |w| ~ 0.1, i.e. one or two ulps)."""
  model_dir, _, plain = exported("qwen3_tied", lora)
  mesh = make_mesh(data=2, fsdp=2, tensor=2)
  with use_mesh(mesh):
    model = trained_model(model_dir, lora=lora, mesh=mesh)
    kernel = model.layers.mlp.up_proj.kernel[...]
    assert len(kernel.sharding.device_set) == 8 and not kernel.sharding.is_fully_replicated
    sharded = export_model(model, tmp_path, base_dir=model_dir, max_seq_length=MAX_SEQ_LENGTH,
                           max_shard_size=SHARD_SIZE)

  assert "model.safetensors.index.json" in weight_files(plain) and len(weight_files(plain)) > 3
  if not lora:
    assert weight_files(sharded) == weight_files(plain)
    return
  assert weight_files(sharded).keys() == weight_files(plain).keys()
  assert (sharded / "model.safetensors.index.json").read_text() == (plain / "model.safetensors.index.json").read_text()
  want, got = saved_tensors(plain), saved_tensors(sharded)
  diff = max(np.abs(got[n] - want[n]).max() for n in want)
  print(f"sharded vs unsharded LoRA export: max |weight diff| = {diff:.2g}")
  assert diff <= 1e-7
  assert all(np.array_equal(got[n], want[n]) for n in want if "embed" in n or "norm" in n)


def test_rewriting_weights_removes_stale_files(exported, tmp_path):
  _, model, _ = exported("qwen3_tied", False)
  params = nnx.state(model, nnx.Param)
  assert len(save_safetensors(params, tmp_path, dtype="float32", max_shard_size=SHARD_SIZE)) > 3
  assert save_safetensors(params, tmp_path, dtype="float32") == ["model.safetensors"]
  assert sorted(p.name for p in tmp_path.glob("model*")) == ["model.safetensors"]


def test_errors_name_the_problem(exported, tiny_model_factory, tmp_path):
  qwen_dir, qwen, _ = exported("qwen3_tied", False)
  llama_dir, _ = tiny_model_factory("llama31")
  with pytest.raises(ValueError, match="model_type 'llama' does not match the model's 'qwen3'"):
    export_model(qwen, tmp_path / "a", base_dir=llama_dir)
  with pytest.raises(ValueError, match="max_shard_size='5 parsecs'"):
    export_model(qwen, tmp_path / "b", base_dir=qwen_dir, max_shard_size="5 parsecs")
  with pytest.raises(ValueError, match="is the base model directory"):
    export_model(qwen, qwen_dir, base_dir=qwen_dir)
  with pytest.raises(ValueError, match="prompt 'empty': empty instruction"):
    export_model(qwen, tmp_path / "c", base_dir=qwen_dir, instructions={"empty": ""})
  assert not any(tmp_path.iterdir())  # every check comes before the first file


@pytest.mark.slow
def test_smollm2_135m_export(smollm2_dir, tmp_path):
  """The real 135M model with perturbed adapters, exported in fp32: transformers, sentence-transformers and
  rejax agree (hidden states reach |h| ~ 50, so that bound is relative, as in test_parity)."""
  from sentence_transformers import SentenceTransformer

  model = trained_model(smollm2_dir, lora=True)
  out = export_model(model, tmp_path / "smollm2", base_dir=smollm2_dir, max_seq_length=MAX_SEQ_LENGTH,
                     max_shard_size="200MB")
  assert (out / "model.safetensors.index.json").is_file() and safetensors_dtypes(out) == {"F32"}
  tokenizer = load_tokenizer(out)
  seqs = tokenize(tokenizer, [format_query(t, BIOLOGY) for t in TEXTS], 128)
  assert seqs == tokenize(load_tokenizer(smollm2_dir), [format_query(t, BIOLOGY) for t in TEXTS], 128)
  ids, mask = pad_batch(seqs, max(map(len, seqs)), pad_id=0)
  real = mask.astype(bool)
  hidden, ours = hf_hidden(out, ids, mask), np.asarray(merge_lora(model)(jnp.asarray(ids), jnp.asarray(mask)))
  rel = np.abs(hidden - ours)[real].max() / np.abs(hidden)[real].max()
  st = SentenceTransformer(str(out), device="cpu").encode(TEXTS, prompt_name="biology")
  rejax = Encoder.from_pretrained(out, max_length=MAX_SEQ_LENGTH).encode(TEXTS, instruction=BIOLOGY, progress=False)
  cos = (st * rejax).sum(-1).min()
  print(f"SmolLM2-135M export: max |transformers - rejax| = {rel:.2g} of max |h|; min cosine ST vs rejax {cos:.8f}")
  assert rel <= 1e-5
  assert cos >= 0.9999


MULTIHOST_WORKER = """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[1]}", num_processes=2, process_id=int(sys.argv[2]))
from rejax.hf.export import export_model
from rejax.hf.load import load_decoder
from rejax.sharding import make_mesh, use_mesh
with use_mesh(make_mesh(data=2, fsdp=2, tensor=2)) as mesh:
  model, _ = load_decoder(sys.argv[3], mesh=mesh)
  assert not model.layers.mlp.up_proj.kernel[...].is_fully_addressable
  export_model(model, sys.argv[4], base_dir=sys.argv[3], max_seq_length=int(sys.argv[5]), max_shard_size=sys.argv[6])
"""


@pytest.mark.slow
def test_two_processes_export_what_one_does(exported, tmp_path):
  """2 processes x 4 CPU devices (jax.distributed on loopback): weights are gathered across processes and
  process 0 writes the same files one process writes."""
  import os
  import socket
  import subprocess
  import sys

  model_dir, _, single = exported("qwen3_tied", False)
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
  out = tmp_path / "export"
  procs = [subprocess.Popen([sys.executable, "-c", MULTIHOST_WORKER, str(port), str(i), str(model_dir), str(out),
                             str(MAX_SEQ_LENGTH), SHARD_SIZE], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
  assert weight_files(out) == weight_files(single)
  for file in ("config.json", "tokenizer.json", "tokenizer_config.json", "modules.json",
               "config_sentence_transformers.json", "1_Pooling/config.json"):
    assert (out / file).read_text() == (single / file).read_text(), file
