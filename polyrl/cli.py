"""The ``polyrl`` command: a thin layer over the Python API.

``polyrl train ALGO [ENV]`` builds its options from the algorithm's
``Config`` dataclass, so every config field is a ``--field-name`` option
with the field's default and docstring as help.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_type_hints

from polyrl import algos
from polyrl._version import __version__
from polyrl.config import _is_section, add_options
from polyrl.errors import ConfigError, PolyrlError
from polyrl.io import write_json_atomic

TRAIN_USAGE = "polyrl train ALGO [ENV] [--env ID] [--dataset PATH] [--steps N] [--seed S] [--run-dir DIR] [--<config-field> V ...]"


def _type_name(typ: Any) -> str:
    return getattr(typ, "__name__", None) or str(typ).replace("typing.", "")


def _train_parser(algo_name: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"polyrl train {algo_name or 'ALGO'}", usage=TRAIN_USAGE.replace("ALGO", algo_name or "ALGO"),
                                description="Train an agent; writes config, metrics, TensorBoard logs and checkpoints to the run directory.")
    p.add_argument("env_pos", nargs="?", metavar="ENV", help="Gymnasium environment id (same as --env)")
    run = p.add_argument_group("run")
    run.add_argument("--env", help="Gymnasium environment id")
    run.add_argument("--dataset", default=None, help="training data of an offline algorithm (the env defaults to the dataset's)")
    run.add_argument("--steps", type=int, default=None,
                     help="env steps to train, gradient updates offline (default 100000; with --resume: the total to reach)")
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--run-dir", default=None, help="run directory (default runs/<algo>-<env>-s<seed>-<time>)")
    run.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_settings_options(run)
    run.add_argument("--async-envs", action="store_true", help="step the training envs in subprocesses")
    run.add_argument("--online-steps", type=int, default=None,
                     help="offline algorithms that continue online: env steps of fine-tuning after the offline --steps (default 0)")
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="continue the run in RUN_DIR from its latest checkpoint (in that checkpoint's phase)")
    if algo_name is not None:
        cls = algos.get(algo_name)
        group = p.add_argument_group(f"{cls.name} config (from {cls.Config.__name__})")
        # one option per field, sections flattened (replay.batch_size: --replay-batch-size), and the short names
        # earlier releases used (--batch-size) where the config keeps them (Section.SHORT)
        taken = {o for a in p._actions for o in a.option_strings}
        short = {flat: name for name, flat in cls.Config.aliases().items()}
        hints = get_type_hints(cls.Config)
        for f in dataclasses.fields(cls.Config):  # a whole section in one option: --replay batch_size=64,learning_starts=0
            if _is_section(hints[f.name]):
                group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"sec__{f.name}", default=None, metavar="FIELD=V,...",
                                   help=f"{cls.Config.field_docs().get(f.name, '')} Sets fields of the section at once "
                                   f"(the --{f.name}-* options one by one)".replace("%", "%%"))
        for f in cls.Config.flat_fields():
            spellings = [f.name] + ([short[f.name]] if f.name in short else [])
            names = [o for n in spellings for o in dict.fromkeys(("--" + n.replace("_", "-"), "--" + n)) if o not in taken]
            default = f.default
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            # argparse %-formats help strings: a literal % in a docstring ("5% real") must be doubled
            help_text = f"{f.doc} [{_type_name(f.type)}, default {shown}]".replace("%", "%%")
            if f.type is bool:
                group.add_argument(*names, dest=f"cfg__{f.name}", action=argparse.BooleanOptionalAction, default=None, help=help_text)
            else:
                group.add_argument(*names, dest=f"cfg__{f.name}", default=None, metavar="V", help=help_text, action=_AsSpelled)
    return p


def add_settings_options(group: Any) -> None:
    """One option per :class:`~polyrl.train.TrainSettings` field (:func:`polyrl.config.add_options`); an option not
    given is absent, so a resumed run keeps its own value."""
    from polyrl.train import TrainSettings

    add_options(group, TrainSettings, dest_prefix="set__", given_only=True)


def settings_from_args(args: argparse.Namespace, base: Any = None) -> tuple[Any, dict[str, Any]]:
    """The :class:`~polyrl.train.TrainSettings` of a run: ``base`` (a resumed run's own; default the class defaults)
    with the ``--<setting>`` options given on this command line; the progress bar only on a terminal. Returns the
    settings and the options given."""
    from polyrl.train import TrainSettings

    given = {k[5:]: v for k, v in vars(args).items() if k.startswith("set__")}
    settings = dataclasses.replace(base if base is not None else TrainSettings(), **given)
    return dataclasses.replace(settings, progress=settings.progress and sys.stderr.isatty()), given


def section_values(text: str) -> dict[str, str]:
    """``"batch_size=64,hidden=32,32"`` -> ``{"batch_size": "64", "hidden": "32,32"}`` (a token without ``=`` continues
    the previous value, so tuples need no quoting); the config coerces the strings."""
    out: dict[str, str] = {}
    last = None
    for token in (t.strip() for t in text.split(",") if t.strip()):
        key, sep, value = token.partition("=")
        if sep:
            last = key.strip().replace("-", "_")
            out[last] = value.strip()
        elif last is not None:
            out[last] += "," + token
        else:
            raise ConfigError(f"expected FIELD=VALUE[,FIELD=VALUE...], got {text!r}")
    return out


def _planned_online(run: str) -> bool:
    """Whether the run's command planned an online phase after the offline one (its ``plan.json``)."""
    from polyrl.train.checkpoint import resolve

    ckpt = resolve(run)
    plan = (ckpt.parent.parent if ckpt.parent.name == "checkpoints" else Path(run)) / "plan.json"
    return plan.exists() and json.loads(plan.read_text()).get("online_steps", 0) > 0


class _AsSpelled(argparse.Action):
    """Store a config option's value under the name the user spelled it (``--n-steps`` -> ``n_steps``), so an error
    about its value names the option that was given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, ((option_string or "").lstrip("-").replace("-", "_"), values))


def _unknown_option_error(algo_name: str, leftovers: list[str], parser: argparse.ArgumentParser) -> ConfigError:
    bad = next((x for x in leftovers if x.startswith("-")), leftovers[0]).split("=")[0]
    options = [o for a in parser._actions for o in a.option_strings]
    close = difflib.get_close_matches(bad, options, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    what = "option" if bad.startswith("-") else "argument"
    return ConfigError(f"unknown {what} {bad} for {algo_name}{hint} (`polyrl train {algo_name} --help` lists the config fields)")


def cmd_train(argv: Sequence[str]) -> int:
    from polyrl.agent import Agent

    algo_name = argv[0] if argv and not argv[0].startswith("-") else None
    if algo_name is None and "--resume" not in argv:
        _train_parser(None).print_help()
        print(f"\nalgorithms: {', '.join(algos.names())}")
        return 0 if any(a in ("-h", "--help") for a in argv) else 2
    parser = _train_parser(algo_name)
    args, leftovers = parser.parse_known_args(list(argv[1:] if algo_name else argv))
    if leftovers:
        raise _unknown_option_error(algo_name or "train", leftovers, parser)
    config = dict(v if isinstance(v, tuple) else (k[5:], v) for k, v in vars(args).items() if k.startswith("cfg__") and v is not None)
    config |= {k[5:]: section_values(v) for k, v in vars(args).items() if k.startswith("sec__") and v is not None}
    settings, given = settings_from_args(args)
    if args.resume:
        if config:
            raise ConfigError(f"a resumed run keeps its config; drop {', '.join('--' + k.replace('_', '-') for k in config)}")
        agent = Agent.load(args.resume, device=args.device)
        for line in agent.settings.changes_on_resume(dataclasses.replace(agent.settings, **given)):
            print(f"warning: {line}", file=sys.stderr)
        agent.settings, _ = settings_from_args(args, agent.settings)  # the run's own settings, with the options given
        agent._resumed_settings = None  # said above
        # --steps is the total to reach in the checkpoint's phase: env steps online, gradient updates offline
        steps = None if args.steps is None else max(args.steps - agent.progress, 0)
        if steps is None and agent.trainer is None and agent._pending_resume is not None and \
                int(agent._pending_resume.get("target", 0)) <= agent.progress:
            steps = 0  # the checkpoint is its phase's last: what remains is the plan's next phase, if any
        if steps == 0 and (agent.algo.online or not _planned_online(args.resume)):
            unit = "env steps" if agent.algo.online else "updates"
            print(f"{args.resume} already has {agent.progress} {unit}; nothing to do")
            return 0
    else:
        env = args.env or args.env_pos
        if env is None and args.dataset is None:
            raise ConfigError(f"no environment given; usage: {TRAIN_USAGE}")
        if args.env and args.env_pos and args.env != args.env_pos:
            raise ConfigError(f"two environments given ({args.env_pos} and --env {args.env}); give one")
        agent = Agent(algo_name, env, dataset=args.dataset, seed=args.seed, device=args.device, run_dir=args.run_dir,  # type: ignore[arg-type]
                      vectorization="async" if args.async_envs else "sync", settings=settings, **config)
        steps = 100_000 if args.steps is None else args.steps
    # The command's plan is part of the run: a bare --resume of a run killed offline also does its online phase.
    plan_path = agent.ensure_run_dir() / "plan.json"
    plan = json.loads(plan_path.read_text()) if args.resume and plan_path.exists() else {}
    if args.online_steps is not None or not args.resume:
        plan["online_steps"] = int(args.online_steps or 0)
        write_json_atomic(plan_path, plan)
    try:
        if steps != 0:
            agent.learn(steps)
        if plan.get("online_steps", 0) > 0 and not agent.algo.online:
            agent.start_online()
            agent.learn(plan["online_steps"])
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last checkpoint is {agent.latest_checkpoint()}", file=sys.stderr)
        return 130
    finally:
        agent.close()
    last = agent.latest_checkpoint()
    print(f"run directory: {agent.run_dir}\ncheckpoint: {last}")
    rows = [json.loads(line) for line in open(agent.run_dir / "metrics.jsonl")]  # type: ignore[operator]
    evals = [r for r in rows if "eval/return" in r]
    if evals:
        print(f"final evaluation: return {evals[-1]['eval/return']:.2f} +- {evals[-1]['eval/return_std']:.2f} at step {evals[-1]['step']}")
    return 0


def cmd_collect(argv: Sequence[str]) -> int:
    from polyrl.agent import Agent
    from polyrl.data.collect import collect

    p = argparse.ArgumentParser(prog="polyrl collect", description="Roll out a policy and save the transitions as a polyrl dataset.")
    p.add_argument("--env", default=None, help="Gymnasium id (default: the policy's env)")
    p.add_argument("--policy", required=True, help="a run or checkpoint directory, or 'random'")
    p.add_argument("--steps", type=int, required=True, help="transitions to record")
    p.add_argument("--out", required=True, help="dataset directory to write (atomically)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deterministic", action="store_true", help="act with the policy's mode instead of sampling")
    p.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise on normalised continuous actions")
    args = p.parse_args(argv)
    if args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    agent = None if args.policy == "random" else Agent.load(args.policy, resume=False)
    env = args.env or (agent.env_id if agent is not None else None)
    if env is None:
        raise ConfigError("a random policy needs --env ID")
    ds = collect(env, args.steps, agent=agent, seed=args.seed, deterministic=args.deterministic, noise=args.noise)
    path = ds.save(args.out)
    info = ds.info()
    print(f"wrote {path}: {info['transitions']} transitions, {info['episodes']} episodes, "
          f"mean return {info['mean_return']:.2f} (policy {ds.meta['policy']})")
    return 0


def cmd_dataset(argv: Sequence[str]) -> int:
    from polyrl.data.minari_io import load_any

    p = argparse.ArgumentParser(prog="polyrl dataset", description="Inspect, make and export datasets (polyrl or Minari).")
    sub = p.add_subparsers(dest="action", required=True)
    info_p = sub.add_parser("info", help="size, shapes, returns, TQ and SACo of a polyrl or Minari dataset")
    info_p.add_argument("path")
    info_p.add_argument("--json", action="store_true", help="print one JSON object")
    export_p = sub.add_parser("export", help="write a dataset in Minari's format (minari.load_dataset opens it)")
    export_p.add_argument("path")
    export_p.add_argument("--minari-id", required=True, help="Minari dataset id, e.g. pendulum/noisy-v0")
    export_p.add_argument("--root", default=None, help="Minari datasets root (default: $MINARI_DATASETS_PATH or ~/.minari/datasets)")
    make_p = sub.add_parser("make", help="build a D4RL-style dataset with polyrl's SAC: <env>-<recipe>",
                            description="Recipes: random, medium, medium-replay, expert, medium-expert (e.g. hopper-medium, "
                            "Pendulum-v1-expert). The SAC run behind them is trained once and reused.")
    make_p.add_argument("name", help="<env>-<recipe>, env as an alias (hopper, halfcheetah, walker2d, ant) or a Gymnasium id")
    make_p.add_argument("--out", required=True, help="dataset directory to write (atomically)")
    make_p.add_argument("--steps", type=int, default=100_000, help="transitions to roll out (medium-replay: set by the run)")
    make_p.add_argument("--train-steps", type=int, default=100_000, help="SAC training budget (env steps)")
    make_p.add_argument("--eval-every", type=int, default=5_000, help="env steps between SAC snapshots")
    make_p.add_argument("--seed", type=int, default=0)
    make_p.add_argument("--sources", default=None, help="where the shared SAC run is kept (default: beside --out)")
    make_p.add_argument("--from-run", default=None, metavar="RUN_DIR",
                        help="take the policies from this run's checkpoints instead of training SAC (medium-replay: its replay buffer)")
    make_p.add_argument("--shipped", action="store_true",
                        help="take the medium/expert policies from the SAC snapshots polyrl ships for the env (Hopper-v5) "
                        "instead of training SAC; medium-replay re-runs the shipped SAC up to its medium snapshot")
    ref_p = sub.add_parser("reference", help="measure an env's reference returns (random policy, an expert run) for normalised scores",
                           description="Prints the mean return of a uniformly random policy and of an expert run's deterministic "
                           "policy; with --out, merges them into a references file (point POLYRL_REFERENCES at it to use it).")
    ref_p.add_argument("env", help="Gymnasium env id, e.g. Hopper-v5")
    ref_p.add_argument("--expert", required=True, metavar="RUN_DIR", help="run or checkpoint directory of the best policy you have")
    ref_p.add_argument("--episodes", type=int, default=100, help="episodes for each policy (default 100)")
    ref_p.add_argument("--seed", type=int, default=0)
    ref_p.add_argument("--out", default=None, help="references JSON file to create or update")
    ref_p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.action == "reference":
        from polyrl.data.scores import write_references
        from polyrl.jobs.reference import measure_reference

        ref = measure_reference(args.env, args.expert, episodes=args.episodes, seed=args.seed)
        if args.out:
            write_references(args.out, {args.env: ref})
        if args.json:
            print(json.dumps({"env_id": args.env} | ref.to_json()))
        else:
            print(f"{args.env}: random {ref.random:.2f}, expert {ref.expert:.2f} ({ref.provenance['expert_policy']}; "
                  f"{args.episodes} episodes each)" + (f"; written to {args.out}" if args.out else ""))
        return 0
    if args.action == "make":
        from polyrl.jobs.recipes import make_dataset

        out = Path(args.out)
        ds = make_dataset(args.name, args.steps, train_steps=args.train_steps, eval_every=args.eval_every, seed=args.seed,
                          sources=args.sources or out.parent / ".polyrl-sources", progress=sys.stderr.isatty(),
                          source_run=args.from_run, shipped=args.shipped)
        ds.save(out)
        info = ds.info()
        print(f"wrote {out}: {info['transitions']} transitions, {info['episodes']} episodes, mean return "
              f"{info['mean_return']:.2f} (recipe {ds.meta['recipe']}, policy {ds.meta['policy']})")
        check = ds.meta.get("replay_check")
        if check is not None and not check["matches_shipped_medium"]:
            print(f"note: the re-run's policy at the medium step differs from the shipped one (largest weight difference "
                  f"{check['max_abs_weight_diff']:.3g}: another CPU or torch release computes differently), so this is a "
                  "medium-replay of the same recipe, not the shipped medium policy's own history", file=sys.stderr)
        return 0
    if args.action == "export":
        from polyrl.data.minari_io import save_minari

        path = save_minari(load_any(args.path), args.minari_id, args.root)
        print(f"wrote Minari dataset {args.minari_id} at {path}")
        return 0
    ds = load_any(args.path)
    info = ds.info() | {"provenance": {k: v for k, v in ds.meta.items() if k not in ("spec",)}}
    if args.json:
        print(json.dumps(info))
    else:
        for key in ("env_id", "transitions", "episodes", "obs_shape", "action_shape", "mean_return", "std_return",
                    "min_return", "max_return", "terminations", "truncations", "tq", "saco", "reference",
                    "normalized_mean_return"):
            print(f"{key:<14} {info[key]}")
    return 0


def cmd_eval(argv: Sequence[str]) -> int:
    from polyrl.agent import Agent

    p = argparse.ArgumentParser(prog="polyrl eval", description="Evaluate a run's latest checkpoint (or a checkpoint directory) deterministically.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's seed + 10000)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--preference", default=None, metavar="W1,W2,...",
                   help="multi-objective runs: weights over the objectives; serves the archive policy maximising w . G")
    args = p.parse_args(argv)
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    agent = Agent.load(args.run_dir, device=args.device, resume=False)
    res = agent.evaluate(args.episodes, seed=args.seed, preference=args.preference)
    agent.close()
    from polyrl.data.scores import reference

    out = res.to_json() | {"algo": agent.algo_cls.name, "env": agent.env_id, "env_steps": agent.algo.env_steps,
                           "updates": agent.algo.n_updates}
    ref = reference(agent.env_id)
    if ref is not None:
        out |= {"normalized_score": ref.score(res.mean_return), "reference": ref.source}
    if args.json:
        print(json.dumps(out))
    else:
        score = f" (normalised score {out['normalized_score']:.1f}, {ref.source} references)" if ref is not None else ""
        print(f"{agent.algo_cls.name} on {agent.env_id} after {agent.algo.env_steps} steps / {agent.algo.n_updates} updates: "
              f"return {res.mean_return:.2f} +- {res.std_return:.2f} over {len(res.returns)} episodes{score}")
        if res.mean_vector is not None:
            w = "equal weights" if args.preference is None else f"preference {args.preference}"
            print(f"  per objective ({w}): " + ", ".join(f"{v:.2f}" for v in res.mean_vector))
    return 0


def cmd_list(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="polyrl list", description="List the algorithms and the action spaces they handle.")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rows = [{"algo": n, "action_spaces": list(c.action_kinds),
             "regime": c.regime, "online_regime": c.online_regime,
             "summary": (c.__module__ and (sys.modules[c.__module__].__doc__ or "").strip().splitlines()[0])}
            for n, c in sorted(algos.REGISTRY.items())]
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'algorithm':<10} {'actions':<14} {'regime':<22} description")
        for r in rows:
            regime = r["regime"] + (f" -> {r['online_regime']}" if r["online_regime"] else "")
            print(f"{r['algo']:<10} {'/'.join(r['action_spaces']):<14} {regime:<22} {r['summary']}")
    return 0


def cmd_ope(argv: Sequence[str]) -> int:
    from polyrl import ope
    from polyrl.agent import Agent
    from polyrl.data.minari_io import load_any

    p = argparse.ArgumentParser(prog="polyrl ope", description="Estimate a run's policy value from a dataset, without the env.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--dataset", required=True, help="polyrl or Minari dataset")
    p.add_argument("--method", choices=["fqe", "model", "both"], default="both")
    p.add_argument("--fqe-steps", type=int, default=20_000, help="FQE gradient steps")
    p.add_argument("--rollouts", type=int, default=100, help="model rollouts")
    p.add_argument("--termination", choices=["learned", "auto"], default="learned",
                   help="where model rollouts end: the model's learned head, or the task's known rule when polyrl has one (auto)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--true-episodes", type=int, default=0, help="also evaluate this many episodes in the real env")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    agent = Agent.load(args.run_dir, resume=False)
    data = load_any(args.dataset)
    data.check_spec(agent.spec)
    results = []
    if args.method in ("fqe", "both"):
        results.append(ope.fqe(agent, data, steps=args.fqe_steps, seed=args.seed))
    if args.method in ("model", "both") and agent.spec.action_kind == "box":
        results.append(ope.model_based(agent, data, n_rollouts=args.rollouts, seed=args.seed,
                                           termination=args.termination))
    out: dict[str, object] = {"run": str(args.run_dir), "dataset": str(args.dataset), "estimates": [r.to_json() for r in results]}
    if args.true_episodes:
        out["true"] = agent.evaluate(args.true_episodes).to_json()
    if args.json:
        print(json.dumps(out))
    else:
        for r in results:
            print(f"{r.method:<6} {r.estimate:10.2f}  [{r.ci_low:.2f}, {r.ci_high:.2f}] {r.confidence:.0%} CI  ({r.quantity})")
        if args.true_episodes:
            print(f"true   {out['true']['mean_return']:10.2f}  (env, {args.true_episodes} episodes)")  # type: ignore[index]
    return 0


def cmd_report(argv: Sequence[str]) -> int:
    from polyrl.report import cli_main

    return cli_main(argv)


def cmd_sweep(argv: Sequence[str]) -> int:
    from polyrl.sweep import cli_main

    return cli_main(argv)


def cmd_pipeline(argv: Sequence[str]) -> int:
    from polyrl.pipeline import RECIPE_SOURCES, Pipeline, PipelineConfig, config_from_args

    p = argparse.ArgumentParser(prog="polyrl pipeline", description=(
        "The main job: make or load a dataset, train offline, evaluate the candidate policies offline (OPE), "
        "fine-tune online, evaluate, and write report.html. Rerun the same command to resume; finished stages are skipped."))
    # one option per PipelineConfig field (not given: the field's default), and --set for the algorithm's fields
    add_options(p, PipelineConfig, skip=("algo_config",), choices={"recipe_source": RECIPE_SOURCES}, given_only=True)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=V", help="an algorithm config field (repeatable)")
    p.add_argument("--run-dir", default=None, help="run directory (default runs/pipeline-<algo>-<env>-s<seed>)")
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    args = p.parse_args(argv)
    algo_config: dict[str, object] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects FIELD=VALUE, got {item!r}")
        algo_config[key.strip().replace("-", "_")] = value
    cfg = config_from_args({k: v for k, v in vars(args).items() if k not in ("set", "run_dir", "no_progress")}
                           | {"algo_config": algo_config})
    if algo_config:  # validate and type the fields now, not after the dataset stage
        config_cls = algos.get(cfg.algo).Config
        typed = config_cls.from_dict(algo_config).to_dict()
        cfg = PipelineConfig(**(cfg.to_dict() | {"algo_config": {k: typed[config_cls.resolve(k)] for k in algo_config}}))
    run_dir = Path(args.run_dir or f"runs/pipeline-{cfg.algo}-{cfg.env.replace('/', '_')}-s{cfg.seed}")
    state = Pipeline(cfg, run_dir, progress=not args.no_progress).run()
    print(f"run directory: {run_dir}\nreport: {state['stages']['report']['path']}")
    phases = json.loads((run_dir / "scores.json").read_text())["phases"]
    print("offline -> online: " + " -> ".join(
        f"{p['name']} return {p['return']:.1f}" + (f" (score {p['score']:.1f})" if p["score"] is not None else "") for p in phases))
    return 0


COMMANDS = {"train": cmd_train, "pipeline": cmd_pipeline, "eval": cmd_eval, "report": cmd_report, "ope": cmd_ope,
            "list": cmd_list, "collect": cmd_collect, "dataset": cmd_dataset, "sweep": cmd_sweep}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``polyrl`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"polyrl {__version__}: policy optimisation in every RL regime\n\n"
              f"usage: polyrl {{{','.join(COMMANDS)}}} ...\n"
              f"  pipeline [--env ID] [--dataset PATH|--recipe medium] [--algo unio4] [--run-dir DIR]\n"
              f"  train    {TRAIN_USAGE[13:]}\n  eval     RUN_DIR [--episodes N] [--json]\n  list     [--json]\n"
              f"  collect  --policy RUN_DIR|random [--env ID] --steps N --out PATH\n  dataset  info PATH [--json]\n"
              f"  dataset  export PATH --minari-id ID [--root DIR]\n"
              f"  ope      RUN_DIR --dataset PATH [--method fqe|model|both] [--json]\n"
              f"  report   RUN_DIR [RUN_DIR ...] [--out PATH]\n"
              f"  sweep    ALGO --env ID --seeds 0-9 [--grid FIELD=V1,V2 ...] [--search optuna --trials N] [--address ray://...]\n"
              f"  dataset  make <env>-<random|medium|medium-replay|expert|medium-expert> --out PATH [--steps N]")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"polyrl {__version__}")
        return 0
    cmd = COMMANDS.get(argv[0])
    if cmd is None:
        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        print(f"error: unknown command {argv[0]!r}" + (f"; did you mean {close[0]!r}?" if close else f" (commands: {', '.join(COMMANDS)})"),
              file=sys.stderr)
        return 2
    try:
        return cmd(argv[1:])
    except PolyrlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
