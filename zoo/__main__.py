"""`python -m zoo task=mqar model=based`: compose the config, train, write the run directory."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from .config import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from .run import run  # heavy imports (torch) after Hydra has parsed the command line

    return run(cfg)


if __name__ == "__main__":
    main()
