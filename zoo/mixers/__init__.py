"""The mixer zoo. The registry is the config group: `conf/model/NAME.yaml` *is* the entry.

Contract of a sequence mixer (checked for every registered model by `tests/test_mixers.py`):

- one file `zoo/mixers/<name>.py`, one `nn.Module` class named after the paper (`Based`, `GLA`);
- module docstring: the paper, the recurrence/operator as equations, the state shape;
- `__init__(self, d_model: int, *, layer_idx: int, <explicit hyperparameters>)`, no `**kwargs`
  (a typo in a config is then a `TypeError` naming the unexpected keyword);
- `forward(x: [B, T, D]) -> [B, T, D]`, causal: the output at t depends on x[:, :t+1] only;
- `state_size(seq_len: int) -> int`: the number of *elements* of recurrent state one sequence
  carries at inference after `seq_len` tokens (attention: its KV cache); bytes (fp32) are computed
  by the backbone, never with a hidden ×4 here;
- optional dependencies are imported inside `__init__`, never at module top;
- the mixer initialises its own parameters; the backbone never re-initialises a mixer's weights.

`conf/model/NAME.yaml` holds the backbone settings and a `mixer:` node with `_target_` and
`_partial_: true` (the backbone supplies `d_model` and `layer_idx`). A hybrid lists registered
model names in `layers:`; layer i uses the mixer of `layers[i % len(layers)]`.
"""
from __future__ import annotations

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
MODEL_DIR = CONF_DIR / "model"


def available() -> list[str]:
    """Sorted names usable as `model=NAME` (the stems of `conf/model/*.yaml`)."""
    return sorted(p.stem for p in MODEL_DIR.glob("*.yaml"))


def model_config(name: str):
    """The `conf/model/NAME.yaml` node (an OmegaConf DictConfig)."""
    from omegaconf import OmegaConf

    path = MODEL_DIR / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    return OmegaConf.load(path)


__all__ = ["available", "model_config", "CONF_DIR", "MODEL_DIR"]
