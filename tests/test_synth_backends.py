"""The transformers backend (tiny random Qwen3, real tokenizer and chat template) and the vLLM backend's
calls into the engine (a stand-in `vllm` module: vLLM itself is CUDA-only)."""

from __future__ import annotations

import sys
import types

import pytest

from synth.backends import Sampling, make_backend

REQUESTS = [
  [{"role": "user", "content": "Name a sorting algorithm."}],
  [{"role": "user", "content": "A much longer request, so that the batch needs left padding: what is a heap?"}],
  [{"role": "user", "content": "Judge it."}, {"role": "assistant", "content": "Analysis done.\n\n<score>"}],
  [{"role": "user", "content": "Hi"}],
]


def test_transformers_backend_batches_equal_single_requests(tiny_model_factory):
  import torch
  from transformers import AutoModelForCausalLM, AutoTokenizer

  model_dir, _ = tiny_model_factory("qwen3_tied")
  greedy = Sampling(temperature=0.0, max_tokens=6)
  batched = make_backend({"kind": "transformers", "model": str(model_dir), "batch_size": 3}, "backends.tiny")
  answers = batched.chat(REQUESTS, greedy)

  tokenizer = AutoTokenizer.from_pretrained(model_dir)
  model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
  for messages, answer in zip(REQUESTS, answers):  # one at a time, no padding: the reference
    cont = messages[-1]["role"] == "assistant"
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, continue_final_message=cont,
                                           add_generation_prompt=not cont)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
      out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False)
    assert answer == tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
  assert batched.prompt(REQUESTS[2]).endswith("Analysis done.\n\n<score>")  # the prefix stays open
  assert batched.prompt(REQUESTS[0]).endswith("<|im_start|>assistant\n")
  sampled = Sampling(temperature=1.0, top_p=0.9, max_tokens=5, seed=7)
  assert batched.chat(REQUESTS, sampled) == batched.chat(REQUESTS, sampled)  # seeded per batch
  batched.close()


def test_vllm_backend_passes_engine_args_and_splits_continuations(monkeypatch):
  calls = {}

  class LLM:
    def __init__(self, **kwargs):
      calls["init"] = kwargs
      calls["chat"] = []

    def chat(self, conversations, params, **kwargs):
      calls["chat"].append((conversations, params, kwargs))
      return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"{kwargs['continue_final_message']}:"
                                                                         f"{c[0]['content']}")])
              for c in conversations]

  fake = types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw)
  monkeypatch.setitem(sys.modules, "vllm", fake)
  backend = make_backend({"kind": "vllm", "model": "Qwen/Qwen2.5-72B-Instruct",
                          "engine_args": {"tensor_parallel_size": 4, "data_parallel_size": 2}}, "backends.g")
  assert calls["init"] == {"model": "Qwen/Qwen2.5-72B-Instruct", "tensor_parallel_size": 4, "data_parallel_size": 2}
  answers = backend.chat(REQUESTS, Sampling(temperature=1.0, top_p=0.6, max_tokens=9, seed=1))
  assert answers == ["False:Name a sorting algorithm.", f"False:{REQUESTS[1][0]['content']}", "True:Judge it.",
                     "False:Hi"]
  (first, params, kw1), (second, _, kw2) = calls["chat"]
  assert params == {"temperature": 1.0, "top_p": 0.6, "max_tokens": 9, "seed": 1}
  assert len(first) == 3 and kw1["add_generation_prompt"] and not kw1["continue_final_message"]
  assert len(second) == 1 and kw2["continue_final_message"] and not kw2["add_generation_prompt"]


def test_unknown_backend_kind_names_the_key():
  with pytest.raises(ValueError, match=r"backends.x.kind='tgi'"):
    make_backend({"kind": "tgi", "model": "m"}, "backends.x")
  with pytest.raises(ValueError, match=r"backends.x.model: missing"):
    make_backend({"kind": "vllm"}, "backends.x")
