"""`archer` command line: envs, play, collect, sft, eval, train, bench, baseline, algos, config.

Every command that trains or evaluates takes `--config FILE` and trailing `key=value`
overrides of the structured config (archer/config.py), validated before any work starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from archer.buffer.dataset import DatasetError
from archer.config import Config, ConfigError, load_config
from archer.errors import ArcherError
from archer.rollout.envs import EnvError

USER_ERRORS = (ArcherError, DatasetError, EnvError)
"""Errors a user can fix: printed as one line (exit 2). Anything else is a bug and keeps its
traceback; `--debug` (or ARCHER_DEBUG=1) shows the traceback of user errors too."""


def _config(args: argparse.Namespace, extra: list[str]) -> Config:
    return load_config(getattr(args, "config", None), [*extra, *getattr(args, "overrides", [])])


def _kv(pairs: list[str]) -> dict[str, object]:
    """Parse `key=value` env kwargs; values are JSON when they parse as JSON, else strings."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# ----------------------------------------------------------------------------- commands
def cmd_envs_list(args: argparse.Namespace) -> int:
    import archer_envs
    import gymnasium as gym

    for env_id in archer_envs.ENV_IDS:
        spec = gym.spec(env_id)
        print(f"{env_id:36s} {spec.entry_point}  {spec.kwargs or ''}")
    others = sorted(k for k in gym.registry if k.startswith("archer/") and k not in archer_envs.ENV_IDS)
    for env_id in others:
        print(f"{env_id:36s} {gym.spec(env_id).entry_point}")
    return 0


def cmd_envs_check(args: argparse.Namespace) -> int:
    import archer_envs  # noqa: F401
    from archer_envs.checker import check_text_env

    report = check_text_env(args.env_id, episodes=args.episodes, seed=args.seed,
                            env_kwargs=_kv(args.kw))
    print(report.format())
    return 0 if report.ok else 1


def cmd_play(args: argparse.Namespace) -> int:
    from archer.rollout.envs import make_env

    env = make_env(args.env_id, **_kv(args.kw))
    options = {"task_id": args.task} if args.task else {"split": args.split}
    obs, info = env.reset(seed=args.seed, options=options)
    print(f"{args.env_id}: type your utterance and press enter; ctrl-d quits.\n")
    print(obs, end="" if obs.endswith("\n") else "\n")
    total = 0.0
    for line in sys.stdin:
        previous = obs
        obs, reward, terminated, truncated, info = env.step(line.rstrip("\n"))
        total += reward
        # History-style envs grow the observation: show what is new. Page-style envs
        # (WebShop) replace it: show the whole page.
        shown = obs[len(previous):] if obs.startswith(previous) else "\n" + obs
        print(shown, end="" if shown.endswith("\n") else "\n")
        if terminated or truncated:
            outcome = "solved" if info.get("success") else "not solved"
            print(f"\nepisode over ({outcome}); return {total:g}; the answer was {info['task_id']!r}")
            return 0
    print(f"\nquit; the answer was {info['task_id']!r}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from archer.evaluation import collect

    extra = [f"env.id={args.env}"] if args.env else []
    for key in ("agent", "episodes", "noise", "split"):
        if getattr(args, key) is not None:
            extra.append(f"collect.{key}={getattr(args, key)}")
    if args.seed is not None:
        extra.append(f"seed={args.seed}")
    cfg = _config(args, extra)
    summary = collect(cfg, args.out, progress=not args.quiet)
    print(json.dumps({"out": str(args.out), **summary}))
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    """`archer train algo=bc data.path=DATA` for bc.epochs iterations, without evaluation."""
    from archer.warm_start import train_bc

    cfg = _config(args, [f"data.path={args.data}", "algo=bc"])
    summary = train_bc(cfg, args.data, args.out, progress=not args.quiet)
    print(json.dumps({"out": str(args.out), **summary}))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from archer.evaluation import evaluate

    extra = [f"env.id={args.env}"] if args.env else []
    for key in ("episodes", "split", "decoding"):
        if getattr(args, key) is not None:
            extra.append(f"eval.{key}={getattr(args, key)}")
    if args.beta is not None:
        extra.append(f"eval.ilql_beta={args.beta}")
    if args.top_k is not None:
        extra.append(f"eval.ilql_top_k={args.top_k}")
    cfg = _config(args, extra)
    policy, guide = None, None
    if cfg.eval.decoding == "ilql" and not args.policy:
        raise ConfigError("--decoding ilql decodes a policy with its ILQL heads: pass --policy")
    if args.policy:
        from archer.models.policy import Policy

        policy = Policy.from_pretrained(args.policy, cfg.device, cfg.model.max_context_tokens,
                                        reserve=cfg.generation.max_new_tokens)
        if cfg.eval.decoding == "ilql":
            from archer.algorithms.ilql import HEADS, load_guide

            heads = Path(args.heads) if args.heads else Path(args.policy).parent / HEADS
            guide = load_guide(heads, cfg.eval.ilql_beta, cfg.eval.ilql_top_k, policy)
    summary, _ = evaluate(cfg, policy=policy, agent=args.agent, progress=not args.json,
                          chooser=guide)
    if guide is not None:
        summary.update({"ilql_beta": cfg.eval.ilql_beta, "ilql_top_k": cfg.eval.ilql_top_k})
    summary["agent" if args.agent else "policy"] = args.agent or args.policy
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>18s}: {value:.3f}" if isinstance(value, float) else f"{key:>18s}: {value}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """`cfg.algo` through the loop: for an online algorithm, the SFT warm start (cached) unless
    train.init_policy is set, then training; the start and the result side by side."""
    from archer.algorithms import is_offline
    from archer.loop import run

    cfg = _config(args, [])
    t0 = time.time()
    offline = is_offline(cfg)
    what = (f"{cfg.rollout.episodes_per_iter} episodes, {cfg.rollout.num_workers} Ray rollout "
            f"worker(s)") if not offline else f"epochs of {cfg.data.path}"
    detail = f", actor loss {cfg.archer.actor.loss}" if cfg.algo == "archer" else ""
    print(f"archer train: algo={cfg.algo}, {cfg.env.id}, {cfg.train.iterations} iterations x "
          f"{what}{detail}, DeepSpeed "
          f"{'ZeRO-' + str(cfg.deepspeed.zero_stage) if cfg.deepspeed.enabled else 'off'} -> "
          f"{cfg.output_dir}")
    result = run(cfg, progress=not args.quiet)
    before, after = result["before"], result["after"]
    start = "start (SFT)" if cfg.train.init_policy is None and not offline else "start"
    rows = [(start, before), (f"after {cfg.algo}", after)]
    note = f" ({result['heldout_note']})" if result["heldout_note"] else ""
    print(f"\nEvaluation on {cfg.env.id}, split '{cfg.eval.split}'{note}, "
          f"{cfg.eval.episodes} episodes per row:")
    print(f"  {'policy':16s} {'greedy return':>22s} {'sampled return':>22s} {'success (sampled)':>18s}")
    for name, r in rows:
        if r is None:
            continue
        print(f"  {name:16s} {r['eval/return_greedy']:10.2f} ± {r['eval/return_greedy_sem']:4.2f} (sem) "
              f"{r['eval/return_sample']:10.2f} ± {r['eval/return_sample_sem']:4.2f} (sem) "
              f"{r['eval/success_sample']:17.0%}")
    if before is not None:
        print()
        for decoding, what in (("sample", "sampled (temperature "
                                f"{cfg.generation.temperature:g}, the policy being trained)"),
                               ("greedy", "greedy")):
            key = f"eval/return_{decoding}"
            diff = after[key] - before[key]
            se = (after[key + "_sem"] ** 2 + before[key + "_sem"] ** 2) ** 0.5
            margin = f", {abs(diff) / se:.1f} standard errors" if se > 0 else ""
            print(f"  {what} return: {diff:+.2f} (standard error of the difference "
                  f"{se:.2f}{margin})")
        print(f"({time.time() - t0:.0f} s in all)")
    print(f"checkpoint: {Path(cfg.output_dir) / 'checkpoint'}; metrics: "
          f"{Path(cfg.output_dir) / 'metrics.jsonl'}")
    summary = {"before": before, "after": after, "seconds": time.time() - t0}
    (Path(cfg.output_dir) / "train_results.json").write_text(json.dumps(summary, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """`archer bench --config FILE [key=value ...]`, or `archer bench report DIR`."""
    rest = list(args.overrides)
    if rest and rest[0] == "report":
        if len(rest) != 2 or args.config:
            raise ConfigError("usage: archer bench report DIR (re-renders DIR's report from its "
                              "results, without training)")
        from archer.bench.report import write_report

        print(f"report: {write_report(rest[1])}")
        return 0
    from archer.bench.config import load_bench
    from archer.bench.run import bench

    cfg = load_bench(args.config, rest)
    out = bench(cfg, interval=args.progress_every)
    print(f"results: {out / 'results.csv'}, {out / 'summary.json'}; report: {out / 'report.md'}")
    return 0


def cmd_algos(args: argparse.Namespace) -> int:
    from archer.algorithms import ALGORITHMS, SUMMARIES, load_plugins

    load_plugins()
    width = max(map(len, ALGORITHMS))
    for name in ALGORITHMS:
        section = f"{name}.*" if name in Config.__dataclass_fields__ else "algo_kwargs.*"
        print(f"{name:{width}s}  {SUMMARIES[name]}  (config section: {section})")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from archer.config import to_yaml

    cfg = _config(args, [])
    print(f"# resolved config; algo={cfg.algo}: only the '{cfg.algo}' algorithm section is read")
    print(to_yaml(cfg), end="")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    """Offline baseline: scripted data -> tiny SFT policy -> evaluation against scripted agents."""
    from archer.evaluation import evaluate
    from archer.models.policy import Policy
    from archer.warm_start import warm_start

    cfg = _config(args, [])
    out = Path(cfg.output_dir)
    t0 = time.time()
    print(f"[1-2/3] collect {cfg.collect.episodes} episodes of '{cfg.collect.agent}' "
          f"(noise {cfg.collect.noise}) on {cfg.env.id}, then SFT a tiny policy ({cfg.model.size})")
    ckpt = warm_start(cfg, log=lambda msg: print("      " + msg))
    print(f"[3/3] evaluate {cfg.eval.episodes} episodes per row on the '{cfg.eval.split}' split")
    policy = Policy.from_pretrained(ckpt, cfg.device, cfg.model.max_context_tokens,
                                    reserve=cfg.generation.max_new_tokens)
    rows = {}
    for decoding in ("greedy", "sample"):
        cfg.eval.decoding = decoding
        rows[f"SFT policy ({decoding})"], _ = evaluate(cfg, policy=policy)
    rows["random-question agent"], _ = evaluate(cfg, agent="random")
    rows["info-gain expert (noise 0)"], _ = evaluate(cfg, agent="info_gain")
    heldout = next(iter(rows.values()))["heldout"]
    print(f"\nResults on {cfg.env.id}, split '{cfg.eval.split}'"
          f"{'' if heldout else ' (this env has no held-out tasks: eval = train tasks)'}:")
    print(f"  {'agent':30s} {'return':>16s} {'success':>8s} {'turns':>6s}")
    for name, r in rows.items():
        print(f"  {name:30s} {r['return_mean']:7.2f} ± {r['return_sem']:5.2f} (sem) "
              f"{r['success_rate']:7.0%} {r['turns_mean']:6.1f}")
    gain = rows["SFT policy (greedy)"]["return_mean"] - rows["random-question agent"]["return_mean"]
    print(f"\nSFT (greedy) beats the random-question agent by {gain:+.2f} return "
          f"({time.time() - t0:.0f} s in all).")
    (out / "baseline_results.json").write_text(json.dumps(rows, indent=2))
    return 0


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="archer", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of user errors too (also ARCHER_DEBUG=1)")
    p.add_argument("--version", action="version", version=f"archer {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="YAML file of config overrides")
        sp.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")

    envs = sub.add_parser("envs", help="list or check environments")
    envs_sub = envs.add_subparsers(dest="envs_command", required=True)
    envs_sub.add_parser("list", help="list registered archer envs").set_defaults(fn=cmd_envs_list)
    check = envs_sub.add_parser("check", help="run the text-env checker on an env id")
    check.add_argument("env_id")
    check.add_argument("--episodes", type=int, default=8)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--kw", action="append", default=[], metavar="key=value", help="env kwarg")
    check.set_defaults(fn=cmd_envs_check)

    play = sub.add_parser("play", help="play an env in the terminal")
    play.add_argument("env_id")
    play.add_argument("--task", help="task id (default: a random one of --split)")
    play.add_argument("--split", default="train", choices=["train", "eval", "all"])
    play.add_argument("--seed", type=int, default=None)
    play.add_argument("--kw", action="append", default=[], metavar="key=value", help="env kwarg")
    play.set_defaults(fn=cmd_play)

    col = sub.add_parser("collect", help="collect a trajectory dataset with a scripted agent")
    col.add_argument("--env")
    col.add_argument("--agent", help="info_gain, random, or module:callable (obs -> action)")
    col.add_argument("--episodes", type=int)
    col.add_argument("--noise", type=float)
    col.add_argument("--split", choices=["train", "eval", "all"])
    col.add_argument("--seed", type=int)
    col.add_argument("--out", required=True, help="output .jsonl (or .jsonl.gz)")
    col.add_argument("--quiet", action="store_true")
    with_config(col)
    col.set_defaults(fn=cmd_collect)

    sft = sub.add_parser("sft", help="behaviour cloning on a dataset's agent turns")
    sft.add_argument("--data", required=True)
    sft.add_argument("--out", required=True)
    sft.add_argument("--quiet", action="store_true")
    with_config(sft)
    sft.set_defaults(fn=cmd_sft)

    ev = sub.add_parser("eval", help="evaluate a policy or a scripted agent")
    who = ev.add_mutually_exclusive_group(required=True)
    who.add_argument("--policy", help="policy checkpoint directory (HF format)")
    who.add_argument("--agent", help="info_gain, random, or module:callable")
    ev.add_argument("--env")
    ev.add_argument("--episodes", type=int)
    ev.add_argument("--split", choices=["train", "eval", "all"])
    ev.add_argument("--decoding", choices=["greedy", "sample", "ilql"],
                    help="ilql: value-guided decoding with the heads of an algo=ilql run")
    ev.add_argument("--beta", type=float, help="--decoding ilql: advantage weight "
                                               "(eval.ilql_beta, default 4)")
    ev.add_argument("--top-k", dest="top_k", type=int,
                    help="--decoding ilql: tokens kept (eval.ilql_top_k, default 20)")
    ev.add_argument("--heads", help="--decoding ilql: the heads' directory (default: "
                                    "ilql_heads beside the policy directory)")
    ev.add_argument("--json", action="store_true", help="print exactly one JSON object")
    with_config(ev)
    ev.set_defaults(fn=cmd_eval)

    tr = sub.add_parser("train", help="train cfg.algo (default archer: SFT warm start, then "
                                      "ArCHer); no arguments runs the README's main job")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    with_config(tr)
    tr.set_defaults(fn=cmd_train)

    bl = sub.add_parser("baseline", help="offline baseline: collect -> SFT -> evaluate against "
                                         "scripted agents")
    with_config(bl)
    bl.set_defaults(fn=cmd_baseline)

    be = sub.add_parser("bench", help="sample-efficiency benchmark: methods x seeds from one "
                                      "start (`archer bench report DIR` re-renders a report)",
                        usage="archer bench --config BENCH.yaml [key=value ...]\n"
                              "       archer bench report DIR",
                        description="Run a bench (docs/benchmark.md), or with `report DIR` "
                                    "re-render DIR's results, summary, plots and report.md "
                                    "without training.")
    be.add_argument("--progress-every", type=float, default=30.0, metavar="S",
                    help="seconds between progress lines (default 30)")
    with_config(be)
    be.set_defaults(fn=cmd_bench)

    sub.add_parser("algos", help="list the registered algorithms").set_defaults(fn=cmd_algos)
    conf = sub.add_parser("config", help="inspect configs")
    conf_sub = conf.add_subparsers(dest="config_command", required=True)
    show = conf_sub.add_parser("show", help="print the resolved config (defaults <- --config <- "
                                            "key=value)")
    with_config(show)
    show.set_defaults(fn=cmd_config_show)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("archer")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return int(args.fn(args))
    except USER_ERRORS as err:
        if args.debug or os.environ.get("ARCHER_DEBUG") == "1":
            raise
        print(f"archer: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
