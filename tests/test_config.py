"""Training configs: every shipped config loads and passes `validate` on its mesh; overrides are parsed
as the key's type and fail naming the key."""

from __future__ import annotations

import pathlib

import pytest

from rejax.train.config import ConfigError, apply_overrides, load_config_file, validate
from rejax.train.recipe import MESH_PRESETS, paper_run

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "configs"
DEVICES = {name: preset.get("dcn_data", 1) * preset["data"] * preset["fsdp"] * preset["tensor"]
           for name, preset in MESH_PRESETS.items()}


@pytest.mark.parametrize("name", ["qwen3_4b", "qwen3_8b", "llama3_1_8b"])
@pytest.mark.parametrize("preset", sorted(MESH_PRESETS))
def test_paper_configs_validate_on_their_meshes(name, preset):
  config = load_config_file(f"{CONFIGS / name}.py:{preset}")
  validate(config, DEVICES[preset])
  # The recipe itself is checked against docs/method.md's table (tests/test_docs.py): here, that a config
  # file keeps it, changing only the model and the mesh preset's settings.
  expected = paper_run(config.model.path, preset)
  assert config.to_dict() == expected.to_dict()


def test_tiny_config_validates_on_one_device():
  validate(load_config_file(f"{CONFIGS / 'tiny.py'}"), 1)
  validate(load_config_file(f"{CONFIGS / 'tiny.py'}:smollm2"), 1)


def test_overrides_take_the_type_of_the_key():
  config = load_config_file(f"{CONFIGS / 'tiny.py'}")
  apply_overrides(config, ["--config.optim.lr=2e-4", "--config.model.lora.enabled", "--config.data.domains.biology",
                           "(8, 2)", "--config.optim.clip_norm=1", "--config.data.path=", "--noconfig.data.pack"])
  assert config.optim.lr == 2e-4 and config.model.lora.enabled is True and config.data.pack is False
  assert tuple(config.data.domains.biology) == (8, 2) and isinstance(config.optim.clip_norm, float)
  assert config.data.path == ""
  apply_overrides(config, ["--config.data.domains={'biology': (16, 2)}", "--config.model.lora.enabled=false"])
  assert dict(config.data.domains) == {"biology": (16, 2)} and config.model.lora.enabled is False


@pytest.mark.parametrize("override,message", [
  (["--config.optim.lrr=1"], "--config.optim.lrr: no such config key (did you mean optim.lr?)"),
  (["--config.model.lora.rnk", "8"], "--config.model.lora.rnk: no such config key (did you mean model.lora.rank?)"),
  (["--config.total_steps=1.5"], "--config.total_steps=1.5: invalid literal for int()"),
  (["--config.model.lora.enabled=maybe"], "--config.model.lora.enabled=maybe: ('Non-boolean argument"),
  (["--config.optim.lr"], "Missing value for flag --config.optim.lr"),
  (["--config.model.lora.enabled", "false"], "unrecognized arguments: false"),  # a bool's value goes after =
  (["--wrokdir", "x"], "unrecognized arguments: --wrokdir x"),
])
def test_bad_overrides_name_the_key(override, message):
  with pytest.raises(ConfigError) as error:
    apply_overrides(load_config_file(f"{CONFIGS / 'tiny.py'}"), override)
  assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("override,message", [
  ("data.domains.biology=(6, 4)", "data.domains.biology: global batch 6 is not divisible by mesh.data x mesh.fsdp = 4"),
  ("loss.kind=contrastive", "loss.kind='contrastive': expected one of 'infonce', 'ri_infonce'"),
  ("optim.grad_cache_chunk=12", "optim.grad_cache_chunk=12 must divide data.domains.biology's 4 queries"),
  ("optim.grad_cache_chunk=2", "optim.grad_cache_chunk=2 is not a multiple of mesh.data x mesh.fsdp = 4"),
  ("model.frozen_dtype=bfloat16", "model.frozen_dtype='bfloat16': only LoRA has frozen weights"),
])
def test_cross_field_rules_name_the_keys(override, message):
  config = apply_overrides(load_config_file(f"{CONFIGS / 'tiny.py'}"),
                           ["--config.mesh.data=2", "--config.mesh.fsdp=2",
                            "--config.data.domains.earth_science=(8, 4)", "--config.data.domains.economics=(8, 4)",
                            f"--config.{override}"])
  with pytest.raises(ConfigError) as error:
    validate(config, 4)
  assert message in str(error.value)


def test_a_missing_or_broken_config_file_is_named(tmp_path):
  with pytest.raises(ConfigError, match="no such file"):
    load_config_file(str(tmp_path / "nope.py"))
  (tmp_path / "partial.py").write_text(
      "import ml_collections\ndef get_config():\n  return ml_collections.ConfigDict({'seed': 0})\n")
  with pytest.raises(ConfigError, match="missing key\\(s\\) ckpt_every, data, eval, .*, total_steps \\(a training"):
    load_config_file(str(tmp_path / "partial.py"))


@pytest.mark.parametrize("argv,message", [
  (["rejax", "encode", "--model", "m", "--input", "i.jsonl", "--output", "o.npy", "--config.optim.lr=1"],
   "rejax encode: error: --config.optim.lr=1: only `rejax train` and `rejax plan` take config overrides"),
  (["rejax", "encode", "--model", "m", "--input", "i.jsonl", "--output", "o.npy", "--batchsize", "4"],
   "unrecognized arguments: --batchsize 4"),
  (["synth", "contamination", "--synthetic", "s", "--eval", "e", "--output", "o", "--config.mine.top_k=3"],
   "synth contamination: error: --config.mine.top_k=3: only the stage commands take config overrides"),
])
def test_a_flag_the_command_does_not_take_is_a_usage_error(argv, message, capsys):
  from rejax.cli import main as rejax_main
  from synth.cli import main as synth_main

  with pytest.raises(SystemExit) as exit_info:
    (rejax_main if argv[0] == "rejax" else synth_main)(argv[1:])
  assert exit_info.value.code == 2 and message in capsys.readouterr().err
