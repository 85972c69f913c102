"""Generation with `transformers` `generate` on CPU or GPU: left-padded batches of chat-templated prompts."""

from __future__ import annotations

import pathlib
from typing import Sequence

from synth.backends.base import Messages, Sampling, continues


class TransformersBackend:
  """A causal LM and its tokenizer (with a chat template) answering chat requests `batch_size` at a time."""

  def __init__(self, model: str | pathlib.Path, *, device: str = "cpu", dtype: str = "float32", batch_size: int = 8):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    self._torch = torch
    self.tokenizer = AutoTokenizer.from_pretrained(str(model))
    if self.tokenizer.chat_template is None:
      raise ValueError(f"{model}: the tokenizer has no chat template; the transformers backend needs an "
                       "instruction-tuned model")
    self.tokenizer.padding_side = "left"  # generation appends on the right
    if self.tokenizer.pad_token is None:
      self.tokenizer.pad_token = self.tokenizer.eos_token
    self.model = AutoModelForCausalLM.from_pretrained(str(model), dtype=getattr(torch, dtype)).to(device).eval()
    self.device = device
    self.batch_size = batch_size

  def prompt(self, messages: Messages) -> str:
    """The chat-templated prompt text: a new assistant turn, or the final assistant message left open."""
    if continues(messages):
      return self.tokenizer.apply_chat_template(list(messages), tokenize=False, continue_final_message=True)
    return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

  def chat(self, requests: Sequence[Messages], sampling: Sampling) -> list[str | None]:
    """The decoded continuation of each request, in order (special tokens removed)."""
    torch = self._torch
    prompts = [self.prompt(m) for m in requests]
    out: list[str | None] = []
    for start in range(0, len(prompts), self.batch_size):
      batch = prompts[start : start + self.batch_size]
      if sampling.seed is not None:  # a batch's samples are a function of (seed, batch position)
        torch.manual_seed(sampling.seed + start)
      # The chat template already holds the special tokens (BOS included).
      encoded = self.tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
      sample = sampling.temperature > 0
      kwargs = dict(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p) if sample else \
               dict(do_sample=False, temperature=None, top_p=None, top_k=None)
      with torch.no_grad():
        generated = self.model.generate(**encoded, max_new_tokens=sampling.max_tokens,
                                        pad_token_id=self.tokenizer.pad_token_id, **kwargs)
      new_tokens = generated[:, encoded["input_ids"].shape[1]:]
      out += self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return out

  def close(self) -> None:
    """Drops the model (and the GPU memory it held)."""
    del self.model
    if self.device.startswith("cuda"):
      self._torch.cuda.empty_cache()
