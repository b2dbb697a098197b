"""Every registered model on CUDA: a bf16-autocast training step runs, is finite, and the fp32
CUDA forward (Triton kernels) agrees with the CPU forward (PyTorch references)."""
from __future__ import annotations

import pytest
import torch

import zoo

pytestmark = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("name", zoo.mixers.available())
def test_model_trains_on_cuda_and_matches_cpu(name):
    torch.manual_seed(0)
    model = zoo.build_model(name, vocab_size=64, d_model=64, n_layers=2, max_seq_len=128)
    x = torch.randint(0, 64, (4, 100))
    with torch.no_grad():
        ref = model.eval()(x)
    model = model.cuda()
    with torch.no_grad():
        out = model(x.cuda()).float().cpu()
    err = (out - ref).norm() / ref.norm()
    assert err < 2e-3, f"{name}: CUDA fp32 forward differs from CPU by {err:.2e} (relative)"
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(x.cuda()).float().logsumexp(-1).mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters()), f"{name}: non-finite parameters after a step"
