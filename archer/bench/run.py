"""`archer bench`: the start, the matrix of methods x seeds, and running it.

    start   one checkpoint for every run: `start.init_policy`, or scripted episodes + BC (the
            warm start of `archer train`), cached under <out>/start by a digest of what built
            it; its greedy and sampled return are measured beside the scripted expert's and a
            random agent's (<out>/start.json)
    plan    per method and seed, an `archer train` command line: the method's own config and
            overrides, then what the bench owns (env, seed, output_dir, the start, the budget as
            train.iterations, the evaluation marks as train.eval_every, the evaluation episodes,
            a checkpoint at every mark); every config is loaded and checked before anything runs
    run     each pending run as a process of its own (a Ray task, or a local subprocess),
            `parallel` at a time; a run with a checkpoint resumes (`train.resume=true`), a
            finished one is skipped, so re-running the bench completes what is left
    report  results.csv, summary.json, plots and report.md (`archer.bench.report`)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from archer.bench.config import BenchConfig, MethodSpec
from archer.config import Config, ConfigError, load_config

DONE = "bench_done.json"
PLAN = "bench_run.json"
OWNED = ("seed", "output_dir", "train.init_policy", "train.iterations", "train.eval_every",
         "train.save_every", "train.eval_episodes", "eval.episodes", "train.eval_start",
         "train.resume", "data.path")
"""Keys the bench sets on every run (after the method's own settings)."""


@dataclass
class Run:
    method: str
    seed: int
    dir: Path
    config: str | None
    overrides: list[str]
    offline: bool
    iterations: int
    episodes_per_iter: int
    data: str | None = None
    state: str = "pending"
    """pending, running, done or failed."""
    returncode: int | None = None
    submitted: float = 0.0
    """When this bench handed it to the launcher (time.time())."""

    @property
    def label(self) -> str:
        return f"{self.method}/seed{self.seed}"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "archer.cli", "train", "--quiet"]
        if self.config:
            cmd += ["--config", self.config]
        resume = (self.dir / "checkpoint").exists()
        return cmd + self.overrides + (["train.resume=true"] if resume else [])

    def is_done(self) -> bool:
        return finished(self.dir, self.iterations)


def finished(run_dir: Path, iterations: int) -> bool:
    """The run in `run_dir` completed `iterations` (its budget) under this bench."""
    marker = run_dir / DONE
    return marker.is_file() and json.loads(marker.read_text()).get("iterations") == iterations


@dataclass
class Start:
    policy: str
    data: str | None
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------- start
def _env_overrides(bench: BenchConfig) -> list[str]:
    out = [f"env.id={bench.env.id}"]
    out += [f"env.kwargs.{k}={json.dumps(v)}" for k, v in bench.env.kwargs.items()]
    return out


def _start_config(bench: BenchConfig) -> Config:
    s = bench.start
    return load_config(None, [*_env_overrides(bench), *bench.common,
                              f"output_dir={bench.out() / 'start'}", f"seed={s.seed}",
                              f"collect.agent={s.agent}", f"collect.noise={s.noise}",
                              f"collect.episodes={s.episodes}", f"bc.epochs={s.epochs}",
                              f"eval.episodes={bench.eval_episodes}", "train.tensorboard=false"])


def ensure_start(bench: BenchConfig, log=print) -> Start:
    """The shared starting checkpoint and its reference returns, built once (cached)."""
    from archer.warm_start import digest

    cfg = _start_config(bench)
    key = digest(asdict(bench.start), asdict(bench.env), list(bench.common), bench.eval_episodes)
    path = bench.out() / "start.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key and (Path(cached["policy"]) / "config.json").is_file():
            log(f"start: {cached['policy']} (cached)")
            return Start(cached["policy"], cached.get("data"), cached)
    if bench.start.init_policy:
        policy, data = bench.start.init_policy, None
    else:
        from archer.warm_start import data_path, warm_start

        log(f"start: {bench.start.episodes} episodes of {bench.start.agent!r} at noise "
            f"{bench.start.noise}, then {bench.start.epochs} epochs of BC")
        policy = str(warm_start(cfg, progress=False, log=lambda m: log("  " + m)))
        data = str(data_path(cfg))
    info = {"key": key, "policy": policy, "data": data, **_reference_returns(bench, cfg, policy)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2))
    log("start: greedy {:.2f}, sampled {:.2f}; expert {}, random {} ({} episodes each)".format(
        info["start_greedy"], info["start_sample"], _fmt(info.get("expert")),
        _fmt(info.get("random")), bench.eval_episodes))
    return Start(policy, data, info)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _reference_returns(bench: BenchConfig, cfg: Config, policy_dir: str) -> dict[str, Any]:
    """The start's greedy and sampled return, and the scripted expert's and random agent's, on
    the evaluation split with the runs' evaluation seeds."""
    from archer import loop
    from archer.algorithms.api import Acting
    from archer.evaluation import evaluate
    from archer.models.policy import Policy
    from archer.rollout.envs import env_info

    policy = Policy.from_pretrained(policy_dir, cfg.device, cfg.model.max_context_tokens,
                                    reserve=cfg.generation.max_new_tokens)
    ev = loop.evaluate(cfg, Acting(policy=policy), cfg.eval.episodes)
    out: dict[str, Any] = {"heldout_note": env_info(cfg.env.id, cfg.env.kwargs).heldout_note(
        cfg.eval.split)}
    for decoding in ("greedy", "sample"):
        out[f"start_{decoding}"] = ev[f"eval/return_{decoding}"]
        out[f"start_success_{decoding}"] = ev[f"eval/success_{decoding}"]
    for ref in ("expert", "random"):
        agent = getattr(bench.start, ref)
        out[ref], out[f"{ref}_agent"] = None, agent
        if agent:
            try:
                summary, _ = evaluate(cfg, agent=agent, progress=False)
            except (ValueError, KeyError, ConfigError) as err:
                out[f"{ref}_error"] = str(err)  # the env has no such scripted agent
            else:
                out[ref], out[f"{ref}_success"] = summary["return_mean"], summary["success_rate"]
    return out


# ---------------------------------------------------------------------------------- plan
def plan(bench: BenchConfig, start: Start) -> list[Run]:
    """Every (method, seed) run, its config loaded and checked."""
    runs = []
    for m in bench.selected():
        for seed in bench.seeds:
            runs.append(_plan_one(bench, m, seed, start))
    if any(r.offline and r.method == bench.baseline for r in runs):
        raise ConfigError(f"baseline: {bench.baseline!r} is an offline method; episodes-to-"
                          "threshold ratios need an online baseline")
    return runs


def _plan_one(bench: BenchConfig, m: MethodSpec, seed: int, start: Start) -> Run:
    from archer.algorithms import is_offline

    where = f"bench method {m.name!r}"
    own = [*_env_overrides(bench), *bench.common, f"algo={m.algo}", *m.overrides]
    run_dir = bench.out() / "runs" / m.name / f"seed{seed}"
    try:
        # data.path only so that an offline method's config loads (the bench sets it below)
        base = load_config(m.config, [*own, f"data.path={m.data or 'start-data'}"])
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    offline = is_offline(base)
    owned_keys = set(OWNED) - ({"train.iterations"} if offline else set())  # its epochs
    clash = sorted({o.split("=", 1)[0] for o in [*bench.common, *m.overrides]} & owned_keys)
    if clash:
        raise ConfigError(f"{where}: {clash} are set by the bench for every run (seed, budget, "
                          "marks, start; an offline method's data is its `data`); remove them "
                          "from its overrides / common")
    data = None
    if offline:
        data = m.data or start.data or (None if start.policy else "start-data")
        if data is None:
            raise ConfigError(f"{where} is offline and the start was given (start.init_policy), "
                              "so there is no start data: set its `data`")
        iterations, per_iter, every = base.train.iterations, 0, 0
        marks = [f"data.path={data}"]
    else:
        per_iter = base.rollout.episodes_per_iter
        for key, n in (("budget_episodes", bench.budget_episodes),
                       ("eval_every_episodes", bench.eval_every_episodes)):
            if n % per_iter:
                raise ConfigError(f"{where}: its rollout.episodes_per_iter={per_iter} must divide "
                                  f"{key}={n}, so that every method is evaluated at the same "
                                  "episode marks")
        iterations, every = bench.budget_episodes // per_iter, bench.eval_every_episodes // per_iter
        marks = []
    if not start.policy:  # the check before the start exists: its path is not known yet
        return Run(m.name, seed, run_dir, m.config, own, offline, iterations, per_iter, data)
    owned = [f"seed={seed}", f"output_dir={run_dir}", f"train.init_policy={start.policy}",
             f"train.iterations={iterations}", f"train.eval_every={every}",
             f"train.save_every={every}", f"train.eval_episodes={bench.eval_episodes}",
             f"eval.episodes={bench.eval_episodes}", "train.eval_start=true", *marks]
    overrides = [*own, *owned]
    try:
        load_config(m.config, overrides)
    except ConfigError as err:
        raise ConfigError(f"{where}, seed {seed}: {err}") from None
    run = Run(m.name, seed, run_dir, m.config, overrides, offline, iterations, per_iter, data)
    _check_same_run(run)
    return run


def _check_same_run(run: Run) -> None:
    """A run folder holds one configuration: the same one resumes (a larger budget extends
    it), a different one is refused before it mixes two runs' metrics."""
    path = run.dir / PLAN
    if not path.is_file() or not (run.dir / "checkpoint").exists():
        return  # nothing to resume: it starts afresh (its old metrics lines are superseded)
    def key(overrides: list[str]) -> list[str]:
        return [o for o in overrides if not o.startswith("train.iterations=")]
    saved = json.loads(path.read_text())
    if saved.get("config") != run.config or key(saved["overrides"]) != key(run.overrides):
        raise ConfigError(f"{run.dir} holds a run with other settings ({path}); delete the "
                          "folder to rerun it, or give the bench another output_dir")


# ----------------------------------------------------------------------------------- run
def execute(bench: BenchConfig, runs: list[Run], log=print, interval: float = 30.0) -> None:
    """Run the pending runs, `parallel` at a time, with a progress line every `interval` s."""
    for run in runs:
        if run.is_done():
            run.state = "done"
    pending = [r for r in runs if r.state == "pending"]
    log(f"bench {bench.name}: {len(runs)} runs, {len(runs) - len(pending)} already done, "
        f"{len(pending)} to run ({bench.launcher}, {bench.parallel} at a time)")
    if not pending:
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(bench.cpus_per_run), TOKENIZERS_PARALLELISM="false")
    cwd = os.getcwd()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (cwd, env.get("PYTHONPATH")) if p)
    for run in pending:
        run.dir.mkdir(parents=True, exist_ok=True)
        (run.dir / PLAN).write_text(json.dumps({
            "method": run.method, "seed": run.seed, "config": run.config,
            "overrides": run.overrides, "offline": run.offline, "data": run.data,
            "iterations": run.iterations, "episodes_per_iter": run.episodes_per_iter}, indent=2))
    if bench.launcher == "ray":
        _execute_ray(bench, pending, runs, env, cwd, log, interval)
    else:
        _execute_local(bench, pending, runs, env, cwd, log, interval)


def _finish(run: Run, code: int) -> None:
    run.returncode = code
    run.state = "done" if code == 0 else "failed"
    if code == 0:
        (run.dir / DONE).write_text(json.dumps({"iterations": run.iterations}))


def _execute_local(bench: BenchConfig, pending: list[Run], runs: list[Run], env: dict[str, str],
                   cwd: str, log, interval: float) -> None:
    procs: dict[int, tuple[Run, subprocess.Popen, Any]] = {}
    queue = list(pending)
    last = 0.0
    try:
        while queue or procs:
            while queue and len(procs) < bench.parallel:
                run = queue.pop(0)
                handle = _open_log(run.dir / "train.log")
                proc = subprocess.Popen(run.command(), cwd=cwd, env=env, stdout=handle,
                                        stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
                run.state, run.submitted = "running", time.time()
                procs[id(proc)] = (run, proc, handle)
            for key, (run, proc, handle) in list(procs.items()):
                if proc.poll() is not None:
                    handle.close()
                    _finish(run, proc.returncode)
                    del procs[key]
                    log(_status_line(runs, finished=run))
            if time.monotonic() - last >= interval:
                log(_status_line(runs))
                last = time.monotonic()
            time.sleep(0.5)
    finally:
        for _run, proc, handle in procs.values():  # interrupted: stop the children
            proc.terminate()
            proc.wait()
            handle.close()


def _execute_ray(bench: BenchConfig, pending: list[Run], runs: list[Run], env: dict[str, str],
                 cwd: str, log, interval: float) -> None:
    import ray

    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = ({} if os.environ.get("RAY_ADDRESS")
                                  else {"num_cpus": bench.parallel * bench.cpus_per_run})
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    # A run's own process must not join this cluster as a driver with num_cpus (its rollout
    # workers start their own Ray, or join RAY_ADDRESS when the user set one).
    child_env = {k: v for k, v in env.items() if not k.startswith("RAY_") or k == "RAY_ADDRESS"
                 and os.environ.get("RAY_ADDRESS")}
    task = ray.remote(_run_process)
    refs = {}
    try:
        for run in pending:
            ref = task.options(num_cpus=bench.cpus_per_run).remote(
                run.command(), cwd, child_env, str(run.dir / "train.log"))
            refs[ref] = run
            run.state, run.submitted = "running", time.time()  # it starts when a slot frees
        last = time.monotonic()
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=interval)
            for ref in ready:
                run = refs.pop(ref)
                _finish(run, ray.get(ref))
                log(_status_line(runs, finished=run))
            if time.monotonic() - last >= interval:
                log(_status_line(runs))
                last = time.monotonic()
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM when the process that started it dies
    (a cancelled Ray task's worker is killed; its training run must not go on alone)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _open_log(path: str | Path) -> Any:
    """A run's log, appended to, opened with a line saying when this attempt started."""
    handle = open(path, "a", encoding="utf-8")  # noqa: SIM115  (the caller closes it)
    handle.write(f"# archer bench: started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def _run_process(cmd: list[str], cwd: str, env: dict[str, str], log_path: str) -> int:
    """One run as a subprocess of a Ray task; its output goes to `log_path`."""
    with _open_log(log_path) as handle:
        return subprocess.run(cmd, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT,
                              check=False, preexec_fn=_die_with_parent).returncode


def _status_line(runs: list[Run], finished: Run | None = None) -> str:
    done = sum(r.state == "done" for r in runs)
    failed = [r for r in runs if r.state == "failed"]
    head = f"[bench {done}/{len(runs)} done{f', {len(failed)} failed' if failed else ''}]"
    if finished is not None:
        what = "finished" if finished.state == "done" else (
            f"FAILED (exit {finished.returncode}; see {finished.dir / 'train.log'})")
        return f"{head} {finished.label} {what}"
    where = [(r, _where(r)) for r in runs if r.state == "running"]
    parts = [f"{r.label} {w}" for r, w in where if w != "queued"]
    queued = sum(w == "queued" for _, w in where)
    if queued:
        parts.append(f"{queued} queued")
    return f"{head} " + (" | ".join(parts) if parts else "idle")


def _where(run: Run) -> str:
    """Where a running run is: its last logged iteration, episodes and evaluation."""
    log = run.dir / "train.log"
    if not log.is_file() or log.stat().st_mtime < run.submitted:  # a Ray task not yet started
        return "queued"
    path = run.dir / "metrics.jsonl"
    if not path.is_file():
        return "starting"
    lines = path.read_text().splitlines()
    if not lines:
        return "starting"
    last = json.loads(lines[-1])
    it = int(last.get("iteration", -1)) + 1
    text = f"it {it}/{run.iterations}"
    if not run.offline:
        text += f", {int(last.get('progress/env_episodes', 0))} episodes"
    evals = [json.loads(x) for x in lines if '"eval/return_sample"' in x]
    if evals:
        text += f", eval {evals[-1]['eval/return_sample']:.2f} (sampled)"
    return text


def bench(bench_cfg: BenchConfig, log=print, interval: float = 30.0) -> Path:
    """Start, plan, run what is left, and write the report; returns the output folder."""
    from archer.bench.report import write_report

    out = bench_cfg.out()
    out.mkdir(parents=True, exist_ok=True)
    plan(bench_cfg, Start(policy="", data=None))  # every method's config checked: fail fast
    with _lock(out):
        start = ensure_start(bench_cfg, log=log)
        _warn_no_room(bench_cfg, start, log)
        runs = plan(bench_cfg, start)
        _save_bench(bench_cfg, out)
        execute(bench_cfg, runs, log=log, interval=interval)
    failed = [r for r in runs if r.state == "failed"]
    report = write_report(out)
    log(f"report: {report}")
    if failed:
        raise BenchError(f"{len(failed)} run(s) failed: " + ", ".join(
            f"{r.label} ({r.dir / 'train.log'})" for r in failed) + "; re-run the bench to "
            "retry them (finished runs are kept)")
    return out


def _warn_no_room(bench_cfg: BenchConfig, start: Start, log) -> None:
    """A start already at a threshold (or at the expert) measures nothing there: say so."""
    value = start.info.get(f"start_{bench_cfg.metric}")
    if value is None:
        return
    reached = [t for t in bench_cfg.thresholds if value >= t]
    if reached:
        log(f"warning: the start's {bench_cfg.metric} return {value:.2f} already reaches "
            f"threshold(s) {reached}: every run's episodes-to-threshold there is 0; choose a "
            "weaker start (start.episodes, start.noise, start.epochs) or higher thresholds")
    expert = start.info.get("expert")
    if expert is not None and value >= expert:
        log(f"warning: the start ({value:.2f}) already plays as well as the expert "
            f"({expert:.2f}): there is no room to improve")


@contextlib.contextmanager
def _lock(out: Path):
    """One bench process per output folder: a second one would train the same runs twice."""
    path = out / "bench.lock"
    if path.is_file():
        try:
            pid = int(path.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            pass  # a stale lock: its bench is gone
        except PermissionError:
            raise BenchError(f"{out} is in use by another bench (process {path.read_text()}); "
                             f"wait for it, or delete {path} if it is gone") from None
        else:
            raise BenchError(f"{out} is in use by another bench (process {pid}); wait for it, "
                             f"or delete {path} if it is gone")
    path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


class BenchError(ConfigError):
    """A bench that could not finish every run (the message names them and their logs)."""


def _save_bench(bench_cfg: BenchConfig, out: Path) -> None:
    """The resolved bench config and the machine it ran on, for `archer bench report`."""
    from omegaconf import OmegaConf

    from archer.bench.report import environment

    (out / "bench.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(bench_cfg)))
    (out / "environment.json").write_text(json.dumps(environment(), indent=2))
