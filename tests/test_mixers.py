"""Generic checks every registered model gets for free (parametrised over conf/model/*.yaml)."""
from __future__ import annotations

import pytest
import torch

import zoo

MODELS = zoo.mixers.available()
VOCAB, T = 32, 24


def small(name: str, **kw):
    return zoo.build_model(name, vocab_size=VOCAB, d_model=32, n_layers=2, max_seq_len=64, **kw)


@pytest.mark.parametrize("name", MODELS)
def test_mixer_shape_and_causality(name):
    torch.manual_seed(0)
    model = small(name).eval()
    x = torch.randint(0, VOCAB, (2, T))
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, T, VOCAB)
        assert torch.isfinite(y).all()
        for t in (0, T // 2, T - 2):
            x2 = x.clone()
            x2[:, t + 1:] = torch.randint(0, VOCAB, (2, T - t - 1))
            y2 = model(x2)
            torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], rtol=1e-4, atol=1e-5,
                                       msg=lambda m: f"{name}: output at <= {t} depends on later inputs\n{m}")


@pytest.mark.parametrize("name", MODELS)
def test_mixer_gradients_flow(name):
    torch.manual_seed(0)
    model = small(name)
    x = torch.randint(0, VOCAB, (2, T))
    model(x).float().pow(2).mean().backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name}: no gradient reaches {pname}"
            assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
    mixer_grads = [p.grad for n, p in model.named_parameters() if ".mixer." in n and p.grad is not None]
    assert any(g.abs().sum() > 0 for g in mixer_grads), f"{name}: all mixer gradients are zero"


@pytest.mark.parametrize("name", MODELS)
def test_mixer_state_size_positive(name):
    model = small(name)
    assert model.state_size(T) > 0
    assert model.state_size_bytes(T) == 4 * model.state_size(T)


def test_unknown_model_lists_available():
    with pytest.raises(ValueError, match="available: .*attention"):
        zoo.build_model("no_such_mixer", vocab_size=VOCAB)


def test_mixer_typo_is_an_error():
    with pytest.raises(TypeError, match="feature_dm"):
        small("based", feature_dm=8)
