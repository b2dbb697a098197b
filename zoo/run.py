"""One run: skip if already completed, build data and model, train, write the run directory."""
from __future__ import annotations

import logging
import platform
import subprocess
import time
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .config import config_hash
from .data import build_datasets
from .loggers import make_logger
from .model import from_config
from .results import CHECKPOINT, CONFIG, METRICS, read_summary, write_json, write_text
from .train import TrainConfig, TrainState, resolve_device, train

log = logging.getLogger("zoo")
REPO = Path(__file__).resolve().parents[1]


def versions() -> dict:
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"python": platform.python_version(), "torch": torch.__version__, "triton": triton_version}


def git_commit() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def hparams(cfg: DictConfig) -> dict:
    """Every hyperparameter, as recorded in summary.json (and the results table's columns)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    return {"seed": cfg.seed, "task": container["task"], "model": container["model"], "train": container["train"]}


def build_summary(cfg: DictConfig, run_dir: Path, chash: str, state: TrainState, model, data, device,
                  error: str | None = None) -> dict:
    last = state.last_eval or {}
    slices = {}
    for name, metrics in last.get("slices", {}).items():
        task = data.slice_tasks[name]
        slices[name] = {**metrics, "state_bytes": model.state_size_bytes(task.input_len),
                        "slice_task": task.params()}
    overall = last.get("overall", {})
    return {
        "run_id": run_dir.name, "config_hash": chash, "status": state.status, "error": error,
        "task": cfg.task.name, "model": cfg.model.name, "seed": cfg.seed,
        "d_model": cfg.model.d_model, "n_layers": cfg.model.n_layers, "lr": cfg.train.lr,
        "params": model.num_params(), "state_bytes": model.state_size_bytes(data.task.input_len),
        "accuracy": overall.get("accuracy"), "overall": overall, "slices": slices,
        "steps": state.step, "epochs": state.epoch, "tokens_seen": state.tokens_seen,
        "wall_s": round(state.wall_s, 3), "diverged_step": state.diverged_step,
        "device": device_name(device), "versions": versions(), "git_commit": git_commit(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "hparams": hparams(cfg),
    }


def find_completed(results_dir: Path, chash: str, run_dir: Path) -> tuple[Path, dict] | None:
    """A completed run of the same config: this run directory first, then any run directory under
    results whose name ends in the config hash (the default run/sweep directory names do)."""
    for summary_path in [run_dir / "summary.json", *sorted(results_dir.glob(f"**/*{chash}/summary.json"))]:
        summary = read_summary(summary_path.parent)
        if summary and summary.get("status") == "completed" and summary.get("config_hash") == chash:
            return summary_path.parent, summary
    return None


def run(cfg: DictConfig) -> float | None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    chash = config_hash(cfg)
    train_cfg = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))
    done = find_completed(Path(cfg.results_dir), chash, run_dir)
    if done is not None and not train_cfg.redo:
        summary_dir, previous = done
        log.info(f"skip: this config already completed in {summary_dir} (accuracy {previous.get('accuracy')}); "
                 f"train.redo=true re-runs it")
        return previous.get("accuracy")
    if train_cfg.redo or not train_cfg.resume:
        for name in (CHECKPOINT, METRICS):
            (run_dir / name).unlink(missing_ok=True)

    device = resolve_device(train_cfg.device)
    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    data = build_datasets(task_cfg, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = from_config(cfg.model, vocab_size=data.vocab_size, max_seq_len=data.max_seq_len, head=data.task.head)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
    group = run_dir.parent.name if HydraConfig.get().mode.name == "MULTIRUN" else "single"
    logger = make_logger(OmegaConf.to_container(cfg.logger), run_dir, f"{run_dir.name}", group,
                         hparams(cfg))
    log.info(f"{cfg.task.name} × {cfg.model.name}: {model.num_params():,} parameters, "
             f"state {model.state_size_bytes(data.task.input_len):,} bytes, device {device}, run dir {run_dir}")
    state = TrainState()
    try:
        state = train(model, data, train_cfg, run_dir=run_dir, seed=cfg.seed, device=device, on_eval=logger.log)
    except BaseException as e:  # record the failure (the checkpoint stays for train.resume), then re-raise
        state.status = "failed"
        write_json(run_dir / "summary.json",
                   build_summary(cfg, run_dir, chash, state, model, data, device, error=f"{type(e).__name__}: {e}"))
        raise
    summary = build_summary(cfg, run_dir, chash, state, model, data, device)
    write_json(run_dir / "summary.json", summary)
    logger.finish(summary)
    if state.status == "diverged":
        log.error(f"diverged: the training loss became NaN/inf at step {state.diverged_step}; "
                  f"lower train.lr or set train.grad_clip (summary written to {run_dir})")
    else:
        log.info(f"{state.status}: accuracy {summary['accuracy']:.4f} after {state.step} steps "
                 f"({state.wall_s:.0f}s); {run_dir}/summary.json")
    return summary["accuracy"]
