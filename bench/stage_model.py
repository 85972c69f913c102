"""What a base model on gs:// costs each host: bytes read and the staging time, next to a plain copy, in one run.

    python -m bench.stage_model [--model asset:smollm2] [--json OUT.json]

Uploads the model directory to a real Cloud Storage API on 127.0.0.1 (fake-gcs-server, as the tests use), then,
as one pod host would, stages it with rejax.staging.staged (every file, once per host) and, as the reference, copies
the same objects with gcsfs's own recursive `get`. Prints the bytes each host reads, both times and their ratio,
and what the same scheme costs for the paper's Qwen3-8B (bf16) on a v5p-32 (4 hosts). Loopback is not a data
centre's network: the bytes are the figure that transfers, the seconds are this machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
QWEN3_8B_BF16_BYTES = 16_381_470_720  # Qwen3-8B's safetensors total_size in its model.safetensors.index.json
V5P_32_HOSTS = 4  # 16 chips, 4 per host


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="asset:smollm2")
  parser.add_argument("--json", type=pathlib.Path)
  args = parser.parse_args()
  sys.path.insert(0, str(ROOT))
  from tests.gcs_server import GCSServer

  from rejax.hf.hub import resolve_model_dir

  local = resolve_model_dir(args.model)
  with GCSServer() as gcs, tempfile.TemporaryDirectory() as tmp:
    gcs.apply()
    os.environ["REJAX_STAGING_DIR"] = str(pathlib.Path(tmp) / "staged")
    from rejax import staging, storage

    bucket = storage.as_path(gcs.create_bucket("models") + "/model")
    storage.write_dir_remote(bucket, lambda d: [storage.copy_file(f, d / f.name) for f in local.iterdir()
                                                 if f.is_file()], commit="config.json")
    started = time.perf_counter()
    staged = staging.staged(bucket, "model.path", required="config.json", log=lambda m: None)
    stage_s = time.perf_counter() - started
    read = sum(f.stat().st_size for f in staged.rglob("*") if f.is_file())

    import gcsfs

    started = time.perf_counter()
    gcsfs.GCSFileSystem().get("models/model/", str(pathlib.Path(tmp) / "reference") + "/", recursive=True)
    reference_s = time.perf_counter() - started
  per_host_8b = QWEN3_8B_BF16_BYTES
  report = {"model": args.model, "bytes_per_host": read, "stage_seconds": round(stage_s, 2),
            "reference_copy_seconds": round(reference_s, 2), "ratio": round(reference_s / stage_s, 3),
            "stage_mb_per_s": round(read / stage_s / 1e6, 1),
            "qwen3_8b_v5p32": {"bytes_per_host": per_host_8b, "hosts": V5P_32_HOSTS,
                               "bytes_read_in_all": per_host_8b * V5P_32_HOSTS}}
  print(f"{args.model}: each host reads {read / 1e6:.1f} MB (every file, once) in {stage_s:.2f}s "
        f"({report['stage_mb_per_s']} MB/s on loopback); gcsfs get of the same objects: {reference_s:.2f}s; "
        f"ratio reference/rejax {report['ratio']:.2f}")
  print(f"Qwen3-8B bf16 on v5p-32: {per_host_8b / 1e9:.1f} GB read and kept on each of {V5P_32_HOSTS} hosts, "
        f"{per_host_8b * V5P_32_HOSTS / 1e9:.1f} GB from the bucket in all")
  if args.json:
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
  main()
