"""Shared by the mixer tests: a forward+backward that collects what two implementations must agree on."""
from __future__ import annotations

import torch


def fwd_bwd(module: torch.nn.Module, fn, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Output, input gradient and every parameter gradient of sum(fn(x) * w), w fixed and seeded."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * w).sum().backward()
    out = {"y": y.detach(), "dx": x.grad}
    out.update({f"d.{n}": p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})
    return out
