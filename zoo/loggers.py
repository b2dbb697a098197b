"""Optional experiment loggers. Local files are always written; `logger=wandb` mirrors them to
Weights & Biases (imported lazily: wandb is optional and absent on some machines)."""
from __future__ import annotations

import netrc
import os
from pathlib import Path


class NullLogger:
    def log(self, record: dict) -> None:
        pass

    def finish(self, summary: dict) -> None:
        pass


def wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbLogger:
    """Logs each evaluation record and the final summary; offline unless a key is configured."""

    def __init__(self, cfg: dict, run_dir: Path, run_id: str, group: str, config: dict):
        try:
            import wandb
        except ImportError as e:
            raise ImportError("logger=wandb needs wandb: pip install -e '.[wandb]' (or use logger=none)") from e
        mode = cfg.get("mode") or ("online" if wandb_has_key() else "offline")
        self.run = wandb.init(project=cfg.get("project", "zoo"), entity=cfg.get("entity"), mode=mode,
                              group=cfg.get("group") or group, tags=list(cfg.get("tags") or []),
                              id=run_id, resume="allow", dir=str(run_dir), config=config, reinit=True)

    def log(self, record: dict) -> None:
        from .results import flatten

        self.run.log({k: v for k, v in flatten(record).items() if isinstance(v, (int, float))}, step=record["step"])

    def finish(self, summary: dict) -> None:
        from .results import flatten

        self.run.summary.update({k: v for k, v in flatten(summary).items() if isinstance(v, (int, float, str))})
        self.run.finish()


def make_logger(cfg: dict, run_dir: Path, run_id: str, group: str, config: dict):
    name = cfg.get("name", "none")
    if name == "none":
        return NullLogger()
    if name == "wandb":
        return WandbLogger(cfg, run_dir, run_id, group, config)
    raise ValueError(f"logger={name!r}: expected none or wandb")
