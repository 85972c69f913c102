"""Save a tokenizer that appends EOS itself, so a plain `tokenizer(texts)` (transformers, sentence-transformers)
yields exactly the ids `rejax.data.text.tokenize` feeds the model.

The stock Qwen3 tokenizer adds nothing and Llama-3.1's adds only BOS; the export's post-processor is
`[BOS] $A EOS` (a `tokenizers` TemplateProcessing, set through transformers' `add_bos_token` /
`add_eos_token`). Truncation then keeps EOS as ours does: the tokenizer reserves room for its special
tokens, so `max_length` tokens end in EOS either way. One difference remains: a text whose own last token is
already EOS (the literal string `<|im_end|>` at its end) gets no second EOS from `tokenize`, but does from
the exported tokenizer.
"""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

from rejax.data.text import load_tokenizer, tokenize

# Texts that exercise truncation, an empty text, non-ASCII and a special-looking string in the middle.
PROBE_TEXTS = (
    "Instruct: Given a Biology post, retrieve relevant passages that help answer the post.\nQuery: Why?",
    "",
    "Short.",
    "Le théorème de Pythagore: a² + b² = c² — 直角三角形 " * 4,
    "a <|im_start|> b",
)
PROBE_LENGTHS = (2, 5, 16, 512)


def _prepends_bos(tokenizer) -> bool:
  """Whether the tokenizer puts BOS before the text (Llama-3.x) or not (Qwen3)."""
  with_special = tokenizer("a")["input_ids"]
  plain = tokenizer("a", add_special_tokens=False)["input_ids"]
  prefix = with_special[: len(with_special) - len(plain)] if with_special[-len(plain):] == plain else None
  if prefix not in ([], [tokenizer.bos_token_id]):
    raise ValueError(f"tokenizer {tokenizer.name_or_path}: unexpected special tokens {with_special} around "
                     f"{plain}; only none or a leading BOS are supported")
  return prefix == [tokenizer.bos_token_id] and tokenizer.bos_token_id is not None


def reference_ids(tokenizer, texts: Sequence[str] = PROBE_TEXTS,
                  lengths: Sequence[int] = PROBE_LENGTHS) -> dict[int, list[list[int]]]:
  """max_length -> `rejax.data.text.tokenize`'s ids of `texts`: what an exported tokenizer must reproduce."""
  return {length: tokenize(tokenizer, texts, length) for length in lengths}


def check_same_ids(exported, reference: dict[int, list[list[int]]], texts: Sequence[str] = PROBE_TEXTS) -> None:
  """Raise ValueError unless `exported(texts, truncation=True, max_length=L)` gives `reference[L]` for every L."""
  for length, want in reference.items():
    got = exported(list(texts), truncation=True, max_length=length)["input_ids"]
    for text, w, g in zip(texts, want, got):
      if w != g:
        raise ValueError(f"exported tokenizer differs from rejax.data.text.tokenize at max_length={length} "
                         f"on {text!r}: {g} != {w}")


def save_eos_tokenizer(tokenizer_dir: str | pathlib.Path, output: str | pathlib.Path) -> None:
  """Write the tokenizer of `tokenizer_dir` to `output` with EOS appended by its post-processor, checked."""
  output = pathlib.Path(output)
  tokenizer = load_tokenizer(tokenizer_dir)
  reference = reference_ids(tokenizer)  # before the post-processor changes
  bos = _prepends_bos(tokenizer)
  tokenizer.add_bos_token = bos
  tokenizer.add_eos_token = True  # transformers rebuilds the post-processor as `[BOS] $A EOS`
  tokenizer.save_pretrained(output)

  path = output / "tokenizer_config.json"
  config = json.loads(path.read_text())
  # Explicit flags make transformers rebuild the same post-processor on load, whatever tokenizer.json says.
  config.update(add_bos_token=bos, add_eos_token=True)
  # Right padding: transformers numbers positions 0..n-1 from the left, so real tokens get the positions
  # they had in training. Sentence-transformers' last-token pooling finds the last real token on either side.
  config["padding_side"] = "right"
  if config.get("tokenizer_class") == "TokenizersBackend":
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # the same class in transformers 5, and known to 4
  path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")

  check_same_ids(load_tokenizer(output), reference)
