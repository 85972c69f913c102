"""The sentence-transformers files of an export: Transformer -> Pooling (the model's: last token or mean) ->
Normalize, plus prompts; and the pooling an existing directory declares, so rejax encodes it as they would.

Written in the layout sentence-transformers saved before 6.0 (`sentence_transformers.models.*` module names,
`pooling_mode_lasttoken` / `pooling_mode_mean_tokens`, `max_seq_length` in sentence_bert_config.json), which
published embedders such as Qwen3-Embedding use; 6.x (6.2 in the tests) reads it through its legacy-name table,
so older releases and the current one load the same directory.
"""

from __future__ import annotations

import json
import pathlib
from typing import Mapping, Sequence

from rejax.data.text import format_query

# rejax's pooling (DecoderConfig.pooling) -> its sentence-transformers mode, `pooling_mode_{mode}` in 1_Pooling/.
POOLING_MODES = {"last_token": "lasttoken", "mean": "mean_tokens"}
_ALL_MODES = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def query_prompts(instructions: Mapping[str, str]) -> dict[str, str]:
  """name -> `Instruct: {instruction}\\nQuery: `, so that prompt + text == rejax's `format_query(text, instruction)`."""
  prompts = {}
  for name, instruction in instructions.items():
    if not instruction:
      raise ValueError(f"prompt {name!r}: empty instruction (documents need no prompt)")
    prompts[name] = format_query("", instruction)
  return prompts


def pooling_config(hidden_size: int, pooling: str = "last_token") -> dict:
  """1_Pooling/config.json: `pooling` (a DecoderConfig.pooling) over every token, the prompt's included."""
  return {"word_embedding_dimension": hidden_size,
          **{f"pooling_mode_{mode}": mode == POOLING_MODES[pooling] for mode in _ALL_MODES},
          "include_prompt": True}


def read_pooling(model_dir: str | pathlib.Path) -> str | None:
  """The DecoderConfig.pooling that `model_dir`'s 1_Pooling/config.json declares, or None without one; ValueError
  for a pooling rejax does not compute (e.g. cls_token, or a mean that leaves the prompt out)."""
  path = pathlib.Path(model_dir) / "1_Pooling" / "config.json"
  if not path.is_file():
    return None
  config = json.loads(path.read_text())
  modes = [mode for mode in _ALL_MODES if config.get(f"pooling_mode_{mode}")]
  ours = [name for name, mode in POOLING_MODES.items() if modes == [mode]]
  if not ours:
    raise ValueError(f"{path}: pooling {', '.join(modes) or 'none'}; rejax computes "
                     f"{' or '.join(POOLING_MODES.values())} only")
  if ours == ["mean"] and not config.get("include_prompt", True):
    raise ValueError(f"{path}: mean_tokens with include_prompt=false; rejax averages over every token")
  return ours[0]


def _write_json(path: pathlib.Path, obj) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_sentence_transformers_files(output: str | pathlib.Path, *, hidden_size: int, max_seq_length: int,
                                      prompts: Mapping[str, str], pooling: str = "last_token",
                                      matryoshka_dims: Sequence[int] = ()) -> None:
  """Write modules.json, sentence_bert_config.json, 1_Pooling/ (`pooling`, a DecoderConfig.pooling), 2_Normalize/
  and config_sentence_transformers.json (`prompts` as `query_prompts` makes them; `matryoshka_dims`, the prefix
  sizes the model was trained at, recorded as such: sentence-transformers ignores the key, and its `truncate_dim`
  is left unset so the whole embedding stays the default)."""
  output = pathlib.Path(output)
  _write_json(output / "modules.json", MODULES)
  _write_json(output / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
  _write_json(output / "1_Pooling" / "config.json", pooling_config(hidden_size, pooling))
  (output / "2_Normalize").mkdir(exist_ok=True)  # Normalize has no settings; the folder is where it would keep them
  _write_json(output / "config_sentence_transformers.json", {
      "prompts": dict(prompts),
      "default_prompt_name": None,  # documents are encoded as they are; queries name their task's prompt
      "similarity_fn_name": "cosine",
      **({"matryoshka_dims": sorted(matryoshka_dims, reverse=True)} if matryoshka_dims else {}),
  })
