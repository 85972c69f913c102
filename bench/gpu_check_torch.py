"""The PyTorch side of the GPU check: transformers' Qwen3Model with the paper's LoRA adapters, trained as rejax
trains it, for a like-for-like step time.

Like for like: fp32 weights with bf16 compute (torch.autocast; rejax's row with the frozen base in float32:
param_dtype and frozen_dtype float32, dtype bfloat16; the recipe keeps the frozen base in bf16),
gradient checkpointing of every layer (rejax: remat "full"), LoRA of the same rank, alpha and dropout on the same
projections (no peft needed: `add_lora` below, the same update as rejax.models.lora), AdamW on the adapters (at the
recipe's peak learning rate, without the schedule: a step costs the same either way), the same RI-InfoNCE loss and
clipping (bench.train_step.torch_train_step), transformers' default (SDPA) attention, eager PyTorch as the
reference trainer runs it (no torch.compile).
"""

from __future__ import annotations

import math
import re

import torch

from bench.train_step import torch_train_step


class LoRALinear(torch.nn.Module):
  """base(x) + (alpha / r) * dropout(x) A B with A He-uniform and B zero, the base frozen (rejax's LoRALinear)."""

  def __init__(self, base: torch.nn.Linear, rank: int, alpha: float, dropout: float):
    super().__init__()
    self.base = base.requires_grad_(False)
    self.lora_a = torch.nn.Parameter(torch.empty(base.in_features, rank, device=base.weight.device))
    torch.nn.init.uniform_(self.lora_a, -math.sqrt(6 / base.in_features), math.sqrt(6 / base.in_features))
    self.lora_b = torch.nn.Parameter(torch.zeros(rank, base.out_features, device=base.weight.device))
    self.dropout = torch.nn.Dropout(dropout)
    self.scale = alpha / rank

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.base(x) + (self.dropout(x) @ self.lora_a @ self.lora_b) * self.scale


def add_lora(model: torch.nn.Module, *, rank: int, alpha: float, dropout: float, targets: tuple[str, ...]) -> int:
  """Freezes `model` and wraps every nn.Linear whose own name matches one of `targets` (regular expressions, as
  rejax.models.lora.LoRAConfig matches them); returns the number of trained parameters."""
  model.requires_grad_(False)
  wanted = [(name, module) for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and any(re.fullmatch(t, name.rsplit(".", 1)[-1]) for t in targets)]
  for name, module in wanted:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, LoRALinear(module, rank, alpha, dropout))
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


def checkpoint_every_layer(model) -> None:
  """transformers' activation checkpointing of every decoder layer (its name since 5.x; before, "gradient")."""
  kwargs = {"use_reentrant": False}
  if hasattr(model, "activation_checkpointing_enable"):
    model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
  else:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def reference_step(model_dir: str, *, lora: dict, optim: dict, group: int, temperature: float, device: str,
                   compute_dtype: str):
  """(step(batch) -> loss, trained parameter count): the PyTorch reference of the rejax step."""
  from transformers import AutoModel

  model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).to(device).train()
  trained = add_lora(model, **lora)
  checkpoint_every_layer(model)
  opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=optim["lr"],
                          betas=(optim["b1"], optim["b2"]), eps=optim["eps"], weight_decay=optim["weight_decay"])
  autocast = None if compute_dtype == "float32" else getattr(torch, compute_dtype)
  return torch_train_step(model, opt, group, temperature, device=device, autocast_dtype=autocast), trained
