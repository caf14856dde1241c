"""The bench's output folder -> results.csv, summary.json, plots and report.md.

Everything here reads files only (bench.yaml, start.json, environment.json and each run's
bench_run.json and metrics.jsonl), so `archer bench report DIR` re-renders a report without
training, and a bench interrupted half-way reports the runs it has.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from archer.bench.config import BenchConfig
from archer.bench.curves import (
    AXES,
    EVALS,
    episodes_to_threshold,
    median_ci,
    ratio,
    ratio_interval,
    read_curve,
    spread,
)
from archer.config import ConfigError

PLOTS = {"return_vs_episodes.png": "return vs environment episodes",
         "return_vs_episodes_logx.png": "the same, log x",
         "success_vs_episodes.png": "success vs environment episodes",
         "return_vs_wallclock.png": "return vs training seconds"}


def load_saved(out: Path) -> BenchConfig:
    """The bench config saved beside its results (not re-checked: files it named may be gone)."""
    from omegaconf import OmegaConf

    path = out / "bench.yaml"
    if not path.is_file():
        raise ConfigError(f"{out} is not a bench output folder (no bench.yaml): run "
                          "`archer bench --config ...` first")
    cfg: BenchConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(BenchConfig),
                                                           OmegaConf.load(path)))  # type: ignore[assignment]
    for m in cfg.methods:
        m.algo = m.algo or m.name
    return cfg


def collect_runs(out: Path, cfg: BenchConfig) -> list[dict[str, Any]]:
    """One entry per (method, seed) of the bench: its plan, its curve, whether it finished."""
    from archer.bench.run import PLAN, finished

    runs = []
    for m in cfg.selected():
        for seed in cfg.seeds:
            d = out / "runs" / m.name / f"seed{seed}"
            planned = json.loads((d / PLAN).read_text()) if (d / PLAN).is_file() else None
            curve = read_curve(d / "metrics.jsonl") if (d / "metrics.jsonl").is_file() else []
            done = planned is not None and finished(d, planned["iterations"])
            runs.append({"method": m.name, "algo": m.algo, "seed": seed, "dir": str(d),
                         "plan": planned, "curve": curve, "done": done,
                         "offline": bool(planned and planned["offline"])})
    return runs


def results_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        for mark in r["curve"]:
            rows.append({"method": r["method"], "algo": r["algo"], "seed": r["seed"],
                         "kind": "offline" if r["offline"] else "online", **mark})
    return rows


def summarize(cfg: BenchConfig, runs: list[dict[str, Any]], start: dict[str, Any]
              ) -> dict[str, Any]:
    """Per method: final return and success (median, range over seeds), episodes-to-threshold
    (median and bootstrap interval over seeds) and its ratio to the baseline's."""
    key = f"return_{cfg.metric}"
    methods: dict[str, Any] = {}
    for m in cfg.selected():
        mine = [r for r in runs if r["method"] == m.name]
        finished = [r for r in mine if r["done"] and r["curve"]]
        entry: dict[str, Any] = {"algo": m.algo, "seeds_done": [r["seed"] for r in finished],
                                 "seeds_planned": [r["seed"] for r in mine],
                                 "offline": any(r["offline"] for r in mine)}
        if finished:
            last = [r["curve"][-1] for r in finished]
            entry["final_return"] = spread([x[key] for x in last])
            entry["final_success"] = spread([x[f"success_{cfg.metric}"] for x in last])
            entry["final_return_other"] = spread([x["return_" + _other(cfg.metric)] for x in last])
            entry["start_return"] = spread([r["curve"][0][key] for r in finished])
            entry["episodes"] = spread([x["env_episodes"] for x in last])
            entry["wall_s"] = spread([x["wall_s"] for x in last])
            entry["gradient_steps"] = spread([x["gradient_steps"] for x in last])
            entry["policy_tokens"] = spread([x["policy_tokens"] for x in last])
            if entry["offline"]:
                entry["dataset_episodes"] = spread([x["dataset_episodes"] for x in last])
            else:
                entry["thresholds"] = {}
                for t in cfg.thresholds:
                    per_seed = [episodes_to_threshold([x["env_episodes"] for x in r["curve"]],
                                                      [x[key] for x in r["curve"]], t)
                                for r in finished]
                    ci = median_ci(per_seed, cfg.bootstrap)
                    entry["thresholds"][str(t)] = {"per_seed": per_seed, "median": ci.median,
                                                   "low": ci.low, "high": ci.high}
        methods[m.name] = entry
    base = methods.get(cfg.baseline) if cfg.baseline else None
    if base and "thresholds" in base:
        for name, entry in methods.items():
            if name == cfg.baseline or "thresholds" not in entry:
                continue
            for t, th in entry["thresholds"].items():
                bt = base["thresholds"][t]
                r = ratio(th["median"], bt["median"], cfg.budget_episodes)
                lo, hi = ratio_interval(th["per_seed"], bt["per_seed"], cfg.budget_episodes,
                                        cfg.bootstrap)
                th["ratio_to_baseline"] = {"kind": r.kind, "value": r.value, "text": r.text(),
                                           "interval": [lo, hi]}
    return {"bench": cfg.name, "env": cfg.env.id, "metric": cfg.metric,
            "budget_episodes": cfg.budget_episodes, "baseline": cfg.baseline,
            "thresholds": list(cfg.thresholds), "start": start, "methods": methods,
            "complete": all(r["done"] for r in runs)}


def _other(metric: str) -> str:
    return "greedy" if metric == "sample" else "sample"


# --------------------------------------------------------------------------------- plots
def plot(cfg: BenchConfig, runs: list[dict[str, Any]], start: dict[str, Any], out: Path
         ) -> list[str]:
    """The four PNGs of PLOTS; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    key = f"return_{cfg.metric}"
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    online = [m for m in cfg.selected() if not any(r["offline"] and r["method"] == m.name
                                                    for r in runs)]
    offline = [m for m in cfg.selected() if m not in online]

    def references(ax, success: bool) -> None:
        for name, style in (("expert", ":"), ("random", "-.")):
            value = start.get(f"{name}_success" if success else name)
            if value is not None:
                ax.axhline(value, color="black", ls=style, lw=1,
                           label=f"{name} ({start.get(name + '_agent')}): {value:.2f}")
        if not success:
            for t in cfg.thresholds:
                ax.axhline(t, color="grey", ls="--", lw=0.7)
        for j, m in enumerate(offline):
            last = [r["curve"][-1] for r in runs if r["method"] == m.name and r["curve"]]
            if last:
                v = float(np.median([x[f"success_{cfg.metric}" if success else key]
                                     for x in last]))
                n = int(last[0]["dataset_episodes"])
                ax.axhline(v, color=colors[(len(online) + j) % len(colors)], ls="--", lw=1.2,
                           label=f"{m.name} (offline, {n} logged episodes): {v:.2f}")

    def curves(ax, y: str, x: str, bands: bool) -> None:
        for i, m in enumerate(online):
            mine = [r["curve"] for r in runs if r["method"] == m.name and r["curve"]]
            if not mine:
                continue
            color = colors[i % len(colors)]
            if bands:  # the same marks for every seed: median line, min-max band
                n = min(len(c) for c in mine)
                xs = np.array([mine[0][k][x] for k in range(n)])
                ys = np.array([[c[k][y] for k in range(n)] for c in mine])
                ax.plot(xs, np.median(ys, 0), color=color, marker="o", ms=3,
                        label=f"{m.name} (median of {len(mine)} seeds)")
                ax.fill_between(xs, ys.min(0), ys.max(0), color=color, alpha=0.2, lw=0)
            else:
                for k, c in enumerate(mine):
                    ax.plot([p[x] for p in c], [p[y] for p in c], color=color, marker="o", ms=3,
                            lw=1, label=m.name if k == 0 else None)

    made = []
    specs = [("return_vs_episodes.png", key, "env_episodes", False, True),
             ("return_vs_episodes_logx.png", key, "env_episodes", True, True),
             ("success_vs_episodes.png", f"success_{cfg.metric}", "env_episodes", False, True),
             ("return_vs_wallclock.png", key, "wall_s", False, False)]
    for name, y, x, logx, bands in specs:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        curves(ax, y, x, bands)
        references(ax, success=y.startswith("success"))
        if logx:
            ax.set_xscale("symlog", linthresh=max(1, cfg.eval_every_episodes))
        ax.set_xlabel({"env_episodes": "environment episodes",
                       "wall_s": "training seconds (evaluation excluded)"}[x])
        decoding = "sampled" if cfg.metric == "sample" else "greedy"
        ax.set_ylabel(f"{'success' if y.startswith('success') else 'return'} "
                      f"({decoding} evaluation)")
        ax.set_title(f"{cfg.env.id}: {PLOTS[name]}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made


# --------------------------------------------------------------------------- environment
def environment() -> dict[str, Any]:
    """Package versions, the commit and the machine, for the report."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("archer", "torch", "transformers", "deepspeed", "ray", "gymnasium", "omegaconf",
                "numpy", "matplotlib"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = "not installed"
    here = Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], here)
    dirty = _git(["status", "--porcelain", "--untracked-files=no"], here)
    mem = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except ImportError:
        pass
    return {"versions": versions, "python": platform.python_version(),
            "commit": commit or "unknown (not a git checkout)",
            "dirty": bool(dirty) if commit else None,
            "machine": {"platform": platform.platform(), "processor": platform.processor()
                        or platform.machine(), "cpus": os.cpu_count(), "memory_gib": mem,
                        "gpu": gpu}}


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


# -------------------------------------------------------------------------------- report
def write_report(out: str | Path) -> Path:
    """results.csv, summary.json, the plots and report.md in `out`; returns report.md."""
    out = Path(out)
    cfg = load_saved(out)
    start = json.loads((out / "start.json").read_text()) if (out / "start.json").is_file() else {}
    env_info = (json.loads((out / "environment.json").read_text())
                if (out / "environment.json").is_file() else environment())
    runs = collect_runs(out, cfg)
    rows = results_rows(runs)
    columns = ["method", "algo", "seed", "kind", "iteration", *AXES, *EVALS]
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    summary = summarize(cfg, runs, start)
    (out / "summary.json").write_text(json.dumps(_finite(summary), indent=2))
    plots = plot(cfg, runs, start, out) if rows else []
    path = out / "report.md"
    path.write_text(_markdown(cfg, runs, summary, start, env_info, plots, out))
    return path


def _finite(x: Any) -> Any:
    """+inf (beyond the budget) as the string "> budget": summary.json stays strict JSON."""
    if isinstance(x, float) and math.isinf(x):
        return "> budget"
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def _episodes(x: float, budget: int) -> str:
    return f"> {budget}" if math.isinf(x) else f"{x:.0f}"


def _markdown(cfg: BenchConfig, runs: list[dict[str, Any]], summary: dict[str, Any],
              start: dict[str, Any], env_info: dict[str, Any], plots: list[str], out: Path) -> str:
    from omegaconf import OmegaConf

    metric = "sampled" if cfg.metric == "sample" else "greedy"
    lines = [f"# Bench `{cfg.name}`: {cfg.env.id}", ""]
    done = sum(r["done"] for r in runs)
    lines += [f"{len(cfg.selected())} methods x {len(cfg.seeds)} seeds ({', '.join(map(str, cfg.seeds))}); "
              f"{done} of {len(runs)} runs finished"
              + ("" if done == len(runs) else " (**incomplete**: re-run the bench to finish the "
                 "rest; the tables use finished runs only)") + ".",
              f"Budget {cfg.budget_episodes} environment episodes per online run; "
              f"evaluation ({start.get('heldout_note') or 'the eval split'}) every "
              f"{cfg.eval_every_episodes} episodes and before training, "
              f"{cfg.eval_episodes} greedy + {cfg.eval_episodes} sampled episodes per mark. "
              f"Summary metric: the {metric} return. Every run starts from the same checkpoint.",
              ""]
    note = start.get("heldout_note")
    lines += ["## The start and the reference agents", "",
              f"Start: `{start.get('policy')}`" + (f" ({note})" if note else ""), "",
              "| policy | greedy return | sampled return |", "|---|---:|---:|",
              f"| the start | {_f(start.get('start_greedy'))} | {_f(start.get('start_sample'))} |"]
    for ref in ("expert", "random"):
        if start.get(f"{ref}_agent"):
            value = start.get(ref)
            why = start.get(f"{ref}_error")
            text = _f(value) if value is not None else f"n/a ({why})" if why else "n/a"
            lines.append(f"| {ref}: scripted `{start[ref + '_agent']}` | {text} | (scripted) |")
    lines += ["", "## Results", "",
              f"Final {metric} return and success over seeds (median, range), after the budget; "
              "offline methods after their own epochs on their dataset.", "",
              "| method | seeds | start | final return: median | range | success: median | "
              f"range | {'greedy' if metric == 'sampled' else 'sampled'} (median) | episodes | "
              "gradient steps | training s (median) |",
              "|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|"]
    for name, e in summary["methods"].items():
        if "final_return" not in e:
            lines.append(f"| {name} | none finished | | | | | | | | | |")
            continue
        fr, fs = e["final_return"], e["final_success"]
        eps = (f"{e['dataset_episodes']['median']:.0f} logged" if e["offline"]
               else f"{e['episodes']['median']:.0f}")
        lines.append(
            f"| {name}{' (offline)' if e['offline'] else ''} | "
            f"{','.join(map(str, e['seeds_done']))} | {e['start_return']['median']:.2f} | "
            f"{fr['median']:.2f} | {fr['min']:.2f} to {fr['max']:.2f} | {fs['median']:.0%} | "
            f"{fs['min']:.0%} to {fs['max']:.0%} | {e['final_return_other']['median']:.2f} | "
            f"{eps} | {e['gradient_steps']['median']:.0f} | {e['wall_s']['median']:.0f} |")
    if cfg.thresholds:
        lines += ["", "## Episodes to threshold", "",
                  f"The first evaluation mark whose {metric} return is at or above the threshold "
                  f"(marks every {cfg.eval_every_episodes} episodes, so a crossing is known to "
                  f"that resolution); `> {cfg.budget_episodes}`: not reached within the budget. "
                  "Median over seeds, with a 95% bootstrap interval over seeds"
                  + (f"; the ratio is the method's median over `{cfg.baseline}`'s, a bound when "
                     "either never reached the threshold" if cfg.baseline else "") + ".", "",
                  "| method | threshold | per seed | median | 95% interval |"
                  + (f" ratio to {cfg.baseline} | ratio interval |" if cfg.baseline else ""),
                  "|---|---:|---|---:|---|" + ("---:|---|" if cfg.baseline else "")]
        for name, e in summary["methods"].items():
            for t, th in e.get("thresholds", {}).items():
                per = ", ".join(_episodes(math.inf if v is None else v, cfg.budget_episodes)
                                for v in th["per_seed"])
                row = (f"| {name} | {float(t):g} | {per} | "
                       f"{_episodes(th['median'], cfg.budget_episodes)} | "
                       f"{_episodes(th['low'], cfg.budget_episodes)} to "
                       f"{_episodes(th['high'], cfg.budget_episodes)} |")
                if cfg.baseline:
                    r = th.get("ratio_to_baseline")
                    row += (f" {r['text']} | {r['interval'][0]} to {r['interval'][1]} |" if r
                            else " (baseline) | |")
                lines.append(row)
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{PLOTS[p]}]({p})" for p in plots]
    lines += ["", "## Runs", "", "| run | state | command |", "|---|---|---|"]
    for r in runs:
        state = "finished" if r["done"] else ("started" if r["curve"] or r["plan"] else "not run")
        cmd = ""
        if r["plan"]:
            cmd = "archer train " + (f"--config {r['plan']['config']} " if r["plan"]["config"]
                                     else "") + " ".join(r["plan"]["overrides"])
        lines.append(f"| {r['method']}/seed{r['seed']} | {state} | `{cmd}` |")
    ver = env_info["versions"]
    mach = env_info["machine"]
    lines += ["", "## Reproduce", "", "```bash",
              f"archer bench --config <this bench's YAML> output_dir={out}   # resumes; "
              "finished runs are skipped",
              f"archer bench report {out}                                      # re-render only",
              "```", "", "Resolved bench config (`bench.yaml`):", "", "```yaml",
              OmegaConf.to_yaml(OmegaConf.structured(cfg)).rstrip(), "```", "",
              "## Where it ran", "",
              f"- commit: `{env_info['commit']}`" + (" (with uncommitted changes)"
                                                    if env_info.get("dirty") else ""),
              f"- machine: {mach['platform']}, {mach['processor']}, {mach['cpus']} CPUs, "
              f"{mach['memory_gib']} GiB, GPU: {mach['gpu']}",
              f"- python {env_info['python']}; " + ", ".join(f"{k} {v}" for k, v in ver.items()),
              ""]
    return "\n".join(lines)


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"
