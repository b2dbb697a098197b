"""Experiment presets as data: compose `+experiment=NAME` and expand its sweep into the list of runs.

A preset's grid is its `hydra.sweeper.params` (Hydra's basic sweeper: choice lists, `range()`,
`glob()` over a config group), expanded as a cartesian product in the order Hydra launches it.
Used by `zoo.estimate` (GPU time of a preset) and the preset tests.
"""
from __future__ import annotations

import itertools

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob
from omegaconf import DictConfig

from .config import register_resolvers
from .mixers import CONF_DIR


def compose_preset(name: str, *overrides: str) -> DictConfig:
    """The composed config (with its `hydra` node) of `+experiment=name` plus overrides."""
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"+experiment={name}", *overrides], return_hydra_config=True)


def compose_each(name: str, overrides: list[list[str]] | list[str]) -> list[DictConfig]:
    """One composed config per override set (a string is a set of one), under one Hydra initialisation."""
    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return [compose("config", overrides=[f"+experiment={name}", *([o] if isinstance(o, str) else o)])
                for o in overrides]


def sweep_values(key: str, value: str) -> list[str]:
    """The values a basic-sweeper param expands to (choice lists, range(), glob() over a group)."""
    override = OverridesParser.create().parse_overrides([f"{key}={value}"])[0]
    if isinstance(override.value(), Glob):
        options = sorted(p.stem for p in (CONF_DIR / key.split("@")[0]).glob("*.yaml"))
        return override.value().filter(options)
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def sweep_grid(name: str, *overrides: str) -> dict[str, list[str]]:
    """{swept key: its values} of a preset. A command-line override of a swept key replaces that
    axis (as on the `python -m zoo -m` command line); other overrides apply to every run."""
    params = dict(compose_preset(name).hydra.sweeper.params or {})
    for override in overrides:
        key, _, value = override.partition("=")
        if key in params:
            params[key] = value
    return {k: sweep_values(k, str(v)) for k, v in params.items()}


def grid_runs(name: str, *overrides: str) -> list[list[str]]:
    """Every run of the sweep as its list of overrides (swept values, then the fixed overrides)."""
    grid = sweep_grid(name, *overrides)
    fixed = [o for o in overrides if o.partition("=")[0] not in grid]
    return [[f"{k}={v}" for k, v in zip(grid, values)] + fixed for values in itertools.product(*grid.values())]
