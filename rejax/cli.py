"""`rejax` command line: one subcommand per job (see DESIGN.md section 4 for the contract)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np


def read_texts(path: pathlib.Path) -> list[str]:
  """The "text" of every line of a JSONL file; a bad line raises ValueError naming file:line."""
  texts = []
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None
      if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise ValueError(f'{path}:{lineno}: expected an object with a string "text" field')
      texts.append(record["text"])
  return texts


def save_npy_atomic(path: pathlib.Path, array: np.ndarray) -> None:
  """Write `array` to `path` via a temporary file, so a crash never leaves a half-written output."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "wb") as f:
    np.save(f, array)
  os.replace(tmp, path)


def cmd_encode(args: argparse.Namespace) -> None:
  import jax

  from rejax.eval.encode import Encoder
  from rejax.sharding import make_mesh, use_mesh

  texts = read_texts(args.input)
  mesh = make_mesh(data=jax.device_count())  # data parallel over every device, parameters replicated
  with use_mesh(mesh):
    encoder = Encoder.from_pretrained(args.model, dtype=args.dtype, max_length=args.max_length,
                                      batch_size=args.batch_size, mesh=mesh)
    embeddings = encoder.encode(texts, instruction=args.instruction)
  save_npy_atomic(args.output, embeddings)
  print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.output}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="rejax", description="ReasonEmbed in JAX: train, evaluate, export.")
  commands = parser.add_subparsers(dest="command", required=True)

  encode = commands.add_parser("encode", help="embed the texts of a JSONL file into an .npy matrix")
  encode.add_argument("--model", required=True, help="Hugging Face model directory (Qwen3 or Llama) or hub id")
  encode.add_argument("--input", required=True, type=pathlib.Path, help='JSONL, one {"text": ...} per line')
  encode.add_argument("--output", required=True, type=pathlib.Path, help="output .npy, float32 [N, hidden]")
  encode.add_argument("--instruction", help="format each text as `Instruct: {instruction}\\nQuery: {text}`")
  encode.add_argument("--max-length", type=int, default=512, help="tokens per text, EOS included")
  encode.add_argument("--batch-size", type=int, default=32)
  encode.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                      help="parameter and compute dtype")
  encode.set_defaults(run=cmd_encode)
  return parser


def main(argv: list[str] | None = None) -> None:
  args = build_parser().parse_args(argv)
  try:
    args.run(args)
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    sys.exit(f"rejax {args.command}: error: {e}")


if __name__ == "__main__":
  main()
