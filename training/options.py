"""Options shared by every trainer (parsed from `vigil train`'s command line)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MethodOptions:
    name: str = "mnist-deterministic"
    version: str = "1"
    arch_params: dict[str, Any] = field(default_factory=lambda: {"widths": [16, 32, 64], "hidden": 128, "dropout": 0.25})
    #: Ensemble members, MC / variational / Laplace samples.
    members: int = 5
    num_samples: int = 20
    failure_scorer: str = "msp"
    ood_scorer: str = "msp"
    target_risk: float = 0.005
    ood_pass_rate: float = 0.99
    alpha: float = 0.01
    #: A deterministic bundle whose network MC dropout / Laplace reuse instead of training one.
    base_bundle: str | None = None
