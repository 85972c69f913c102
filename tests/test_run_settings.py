"""What a resumed run may change (how it runs) and may not (what it trains), and the rules of the preemption and
profile keys: each refusal one line naming the key and both values, before any work."""

from __future__ import annotations

import json
import pathlib

import pytest

from rejax.errors import InputError
from rejax.train.config import ConfigError, apply_overrides, load_config_file, to_json, validate
from rejax.train.resume_config import CONFIG_CHANGES, check_resume, record_resume_changes

TINY = str(pathlib.Path(__file__).resolve().parent.parent / "configs" / "tiny.py")


def config_with(*overrides: str):
  return apply_overrides(load_config_file(TINY), [f"--config.{o}" for o in overrides])


def started(tmp_path: pathlib.Path, *overrides: str) -> pathlib.Path:
  """A workdir whose config.json is that of the tiny config with `overrides`, as `rejax train` writes it."""
  (tmp_path / "config.json").write_text(to_json(config_with(*overrides)) + "\n")
  return tmp_path


def test_a_new_workdir_has_nothing_to_compare(tmp_path):
  assert check_resume(config_with(), tmp_path) == {}


def test_how_the_run_goes_on_may_change_and_is_recorded_with_its_step(tmp_path):
  workdir = started(tmp_path)
  config = config_with("total_steps=80", "export_dir=export2", "eval.batch_size=8", "mesh.data=2",
                       "preemption.signals=('SIGUSR1',)", "profile.steps=2", "data.num_workers=2")
  changed = check_resume(config, workdir)
  assert changed == {"total_steps": (40, 80), "export_dir": ("export", "export2"), "eval.batch_size": (32, 8),
                     "mesh.data": (1, 2), "preemption.signals": (["SIGTERM", "SIGUSR1"], ["SIGUSR1"]),
                     "profile.steps": (0, 2), "data.num_workers": (0, 2)}
  record_resume_changes(config, workdir, changed, step=20)
  assert json.loads((workdir / "config.json").read_text())["export_dir"] == "export2"
  [line] = (workdir / CONFIG_CHANGES).read_text().splitlines()
  record = json.loads(line)
  assert record["step"] == 20
  assert record["changes"]["total_steps"] == {"from": 40, "to": 80}
  assert record["changes"]["export_dir"] == {"from": "export", "to": "export2"}
  assert check_resume(config, workdir) == {}  # the next start compares with the recorded config


@pytest.mark.parametrize("override,key,theirs,mine", [
  ("seed=7", "seed", "0", "7"),
  ("optim.lr=0.01", "optim.lr", "0.001", "0.01"),
  ("loss.temperature=0.05", "loss.temperature", "0.02", "0.05"),
  ("data.max_passage_length=128", "data.max_passage_length", "64", "128"),
  ("data.domains.biology=(8, 4)", "data.domains.biology", "[4, 4]", "[8, 4]"),
  ("model.hf_config.hidden_size=128", "model.hf_config.hidden_size", "64", "128"),
  ("model.lora.enabled=True", "model.lora.enabled", "false", "true"),
])
def test_what_the_run_trains_may_not_change_on_resume(tmp_path, override, key, theirs, mine):
  workdir = started(tmp_path)
  with pytest.raises(InputError) as error:
    check_resume(config_with(override), workdir)
  message = str(error.value)
  assert "\n" not in message
  assert message.startswith(f"--workdir {workdir}: holds a run with {key}={theirs} (its config.json), and this "
                            f"command's config has {key}={mine}; a resumed run may change only total_steps, ")
  assert message.endswith(f"Resume it with {key}={theirs}, or use a new --workdir")


def test_a_key_one_config_lacks_is_not_compared(tmp_path):
  saved = json.loads(to_json(config_with()))
  del saved["profile"]  # a workdir started by a rejax without profiles
  saved["retired_key"] = 3  # and one with a key since removed
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert check_resume(config_with("profile.steps=3"), tmp_path) == {}


@pytest.mark.parametrize("override,message", [
  ("preemption.signals=('SIGTERM', 'SIGBOGUS')", "preemption.signals: 'SIGBOGUS' is not a signal name"),
  ("preemption.signals=('SIGKILL',)", "preemption.signals: SIGKILL cannot be caught"),
  ("profile.steps=-1", "profile.steps=-1: must be >= 0"),
  ("profile.start_step=0", "profile.start_step=0: must be >= 1"),
])
def test_preemption_and_profile_keys_are_checked_naming_them(override, message):
  config = config_with("profile.steps=2", override)
  with pytest.raises(ConfigError) as error:
    validate(config, 1)
  assert message in str(error.value)
