"""Noisy in-context recall (Poli et al. 2024, arXiv 2403.17844): in-context recall (see
`tasks.in_context_recall`, whose generator this is) with `noise_vocab_size` extra tokens; each
slot except a guaranteed one becomes 2 noise tokens with probability `frac_noise`. Noise is scored
at train (full next-token loss) and never at test. Paper setting: V=32 (keys 0-7, values 8-15,
noise 16-31), L=128, f=0.2.

Example, `NoisyRecall(vocab_size=8, seq_len=10, noise_vocab_size=2, frac_noise=0.5).generate(1, seed=0)`::

    Inputs: 2 4 0 4 2 4 6 7 0
    Labels: . . . . 4 . . . 4
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .in_context_recall import InContextRecall


@dataclass(frozen=True, kw_only=True)
class NoisyRecall(InContextRecall):
    name = "noisy_recall"

    vocab_size: int = 32
    seq_len: int = 128
    noise_vocab_size: int = 16
    frac_noise: float = 0.2
    noise_guarantee: Literal["reference", "always"] = "reference"
    multi_query: bool = True
