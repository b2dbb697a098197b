"""Build a `LanguageModel` from a `conf/model/NAME.yaml` node (or by name, with overrides)."""
from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from .backbone import LanguageModel
from .mixers import model_config

BACKBONE_KEYS = ("positions", "state_mixer", "mlp_ratio", "norm", "norm_position", "dropout", "embed_dropout")


def mixer_nodes(cfg: DictConfig) -> list[DictConfig]:
    """The per-layer-pattern mixer nodes of a model config.

    `layers: [base_conv, attention]` names registered models (their `mixer` node is used, or their
    own `layers` pattern, flattened); otherwise `mixer` is one node or a list of nodes."""
    if cfg.get("layers"):
        nodes: list[DictConfig] = []
        for name in cfg.layers:
            sub = model_config(str(name))
            nodes.extend(mixer_nodes(sub))
        return nodes
    mixer = cfg.get("mixer")
    if mixer is None:
        raise ValueError(f"model {cfg.get('name')!r} has neither `mixer` nor `layers`")
    return list(mixer) if isinstance(mixer, ListConfig) else [mixer]


def from_config(cfg: DictConfig, *, vocab_size: int, max_seq_len: int, head: str = "lm") -> LanguageModel:
    """A model from a resolved model config (the Hydra `model` group node)."""
    nodes = mixer_nodes(cfg)
    factories = [instantiate(n, _partial_=True) for n in nodes]  # called with (d_model, layer_idx=i)
    mixers = [factories[i % len(factories)] for i in range(int(cfg.n_layers))]
    kwargs = {k: cfg[k] for k in BACKBONE_KEYS if k in cfg}
    return LanguageModel(vocab_size=vocab_size, d_model=int(cfg.d_model), max_seq_len=max_seq_len,
                         mixers=mixers, head=head, **kwargs)


def build_model(name: str, *, vocab_size: int, d_model: int | None = None, n_layers: int | None = None,
                max_seq_len: int = 2048, head: str = "lm", backbone: dict | None = None,
                **mixer_kwargs) -> LanguageModel:
    """`zoo.build_model("based", vocab_size=8192, d_model=128, n_layers=2, max_seq_len=512)`.

    Extra keyword arguments go to the mixer (every layer's mixer, for hybrids); `backbone` overrides
    backbone keys such as `{"state_mixer": "mlp", "positions": "learned"}`."""
    cfg = model_config(name)
    OmegaConf.set_struct(cfg, False)
    if d_model is not None:
        cfg.d_model = d_model
    if n_layers is not None:
        cfg.n_layers = n_layers
    for key, value in (backbone or {}).items():
        if key not in BACKBONE_KEYS:
            raise ValueError(f"unknown backbone key {key!r}; expected one of {BACKBONE_KEYS}")
        cfg[key] = value
    OmegaConf.resolve(cfg)  # interpolations such as ${..n_layers} see the overrides above
    if mixer_kwargs:
        nodes = [OmegaConf.merge(n, mixer_kwargs) for n in mixer_nodes(cfg)]
        cfg.layers = None
        cfg.mixer = nodes
    return from_config(cfg, vocab_size=vocab_size, max_seq_len=max_seq_len, head=head)
