"""What `zpeft perf` measures, by name: backbones, strategy variants and training loops (torch-free)."""

from __future__ import annotations

DEFAULT_BACKBONES = ("resnet18-mlp", "timm/resnet50", "timm/convnext_atto")
VARIANTS: dict[str, dict] = {  # variant name -> strategy name and parameters
    "full": {"name": "full"},
    "lora-r4-peft": {"name": "lora", "rank": 4, "fused": False},
    "lora-r4-fused": {"name": "lora", "rank": 4, "fused": True},
    "head-only": {"name": "head-only"},
}
REFERENCE_VARIANTS = ("full", "lora-r4-peft")  # what the reference pipeline ran
LOOPS = ("reference", "eager", "compiled", "cuda_graph")
