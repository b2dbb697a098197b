"""Backbone options: norm placement, learned positions, the compression head, logits at masks."""
from __future__ import annotations

import pytest
import torch

import zoo


def test_post_norm_block_normalises_the_residual_sum():
    model = zoo.build_model("attention", vocab_size=32, d_model=16, n_layers=1, max_seq_len=8,
                            backbone={"norm_position": "post", "state_mixer": "mlp"})
    block, x = model.blocks[0], torch.randn(2, 8, 16)
    h = block.norm1(x + block.mixer(x))
    torch.testing.assert_close(block(x), block.norm2(h + block.mlp(h)))


def test_pre_norm_block_adds_to_the_residual_stream():
    model = zoo.build_model("attention", vocab_size=32, d_model=16, n_layers=1, max_seq_len=8,
                            backbone={"state_mixer": "mlp"})
    block, x = model.blocks[0], torch.randn(2, 8, 16)
    h = x + block.mixer(block.norm1(x))
    torch.testing.assert_close(block(x), h + block.mlp(block.norm2(h)))


def test_bad_norm_position_is_an_error():
    with pytest.raises(ValueError, match="norm_position='side'"):
        zoo.build_model("attention", vocab_size=32, backbone={"norm_position": "side"})


def test_logits_at_equals_full_logits_at_the_mask():
    torch.manual_seed(0)
    for head in ("lm", "compression"):
        model = zoo.build_model("based", vocab_size=32, d_model=16, n_layers=1, max_seq_len=12, head=head).eval()
        x = torch.randint(0, 32, (3, 12))
        mask = torch.rand(3, 12) < 0.3
        with torch.no_grad():
            torch.testing.assert_close(model.logits_at(model.hidden(x), mask), model(x)[mask])


def test_learned_positions_reject_longer_inputs():
    model = zoo.build_model("attention", vocab_size=32, d_model=16, max_seq_len=8, backbone={"positions": "learned"})
    with pytest.raises(ValueError, match="max_seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
