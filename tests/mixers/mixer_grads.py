"""Shared by the mixer tests: forward+backward helpers that collect what two implementations must agree
on, and the relative comparison they are checked with."""
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


def fn_grads(fn, inputs: dict[str, torch.Tensor], seed: int = 1) -> dict[str, torch.Tensor]:
    """Outputs of fn(**inputs) (a tensor or a tuple) and the gradients of a fixed random projection of
    them with respect to every floating-point input."""
    inputs = {k: v.detach().clone().requires_grad_(v.is_floating_point()) for k, v in inputs.items()}
    outs = fn(**inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    loss.backward()
    res = {f"out{i}": o.detach() for i, o in enumerate(outs)}
    res.update({f"d{k}": v.grad for k, v in inputs.items() if v.grad is not None})
    return res


def assert_rel(name: str, out: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    """max |out - ref| <= tol * max |ref|, and out finite."""
    assert torch.isfinite(out).all(), f"{name}: non-finite values"
    err = (out - ref).abs().max().item()
    scale = max(ref.abs().max().item(), 1e-30)
    assert err <= tol * scale, f"{name}: max error {err:.3g} > {tol:g} × max|ref| {scale:.3g}"
