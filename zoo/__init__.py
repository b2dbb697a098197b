"""zoo: what can sequence-model architectures learn? A harness of synthetic tasks.

    import zoo
    zoo.mixers.available()
    model = zoo.build_model("based", vocab_size=8192, d_model=128, n_layers=2, max_seq_len=512)
    logits = model(inputs)
    model.state_size_bytes(seq_len=512)
"""
from . import mixers
from .model import build_model

__all__ = ["build_model", "mixers"]
