"""Config identity: the hash that names a run directory and decides skip/resume."""
from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

# Keys that do not change what a run computes: they never enter the hash.
NON_SEMANTIC = ("hydra", "logger", "results_dir", "sweep_name", "train.resume", "train.redo",
                "train.progress", "train.device", "train.compile")


def semantic_config(cfg: DictConfig) -> dict:
    """The resolved config as a plain dict without the NON_SEMANTIC keys."""
    keep = [k for k in cfg.keys() if k not in NON_SEMANTIC]
    data = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keep), resolve=True)
    for dotted in NON_SEMANTIC:
        group, _, key = dotted.partition(".")
        if key and isinstance(data.get(group), dict):
            data[group].pop(key, None)
    return data


def config_hash(cfg: DictConfig) -> str:
    """8 hex digits identifying what a run computes."""
    blob = json.dumps(semantic_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def register_resolvers() -> None:
    """`${run_hash:}`: the config hash, usable in hydra.run.dir / hydra.sweep.subdir."""
    if not OmegaConf.has_resolver("run_hash"):
        OmegaConf.register_new_resolver("run_hash", lambda *, _root_: config_hash(_root_), use_cache=False)
