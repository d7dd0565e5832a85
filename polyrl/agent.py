"""The user-facing agent: one object and one set of verbs for every algorithm and regime.

>>> agent = polyrl.make("ppo", env="CartPole-v1", seed=0, n_steps=128)   # doctest: +SKIP
>>> agent.learn(20_000)                                                   # doctest: +SKIP
>>> agent.evaluate(episodes=10).mean_return                              # doctest: +SKIP
>>> agent.save("my-agent"); same = polyrl.load("my-agent")               # doctest: +SKIP

The agent owns the algorithm (networks in normalised action space), the
observation normaliser, the run directory and, once ``learn`` is called,
the trainer (env, data source, logger). ``act`` takes raw observations and
returns actions in the environment's own action space.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyrl import algos, seeding
from polyrl._version import __version__
from polyrl.algos.base import env_copies, episode_policy, preference_policy
from polyrl.clock import Clock
from polyrl.data.dataset import Dataset
from polyrl.data.minari_io import load_any
from polyrl.envs import RunningNorm, VecEnv
from polyrl.errors import CheckpointError, ConfigError
from polyrl.io import write_text_atomic
from polyrl.train.checkpoint import LATEST, list_checkpoints, read_checkpoint, resolve, write_checkpoint
from polyrl.train.evaluate import EvalResult, run_episodes
from polyrl.train.lock import RunLock
from polyrl.train.sources import make_source
from polyrl.train.trainer import Checkpointer, Evaluator, RunParts, Trainer, TrainSettings

NORM_PREFIX = "obs_norm."


class EpisodePolicy:
    """Raw observations -> env actions over whole episodes, for one or a batch of env copies (see
    :meth:`Agent.policy`). Pass ``episode_start`` (bool, or one per copy) where an episode begins; the first call
    always starts one, and :meth:`reset` makes the next call start one everywhere."""

    def __init__(self, agent: Agent, deterministic: bool = True) -> None:
        self.agent = agent
        self._policy = episode_policy(agent.algo, deterministic=deterministic)
        self._started = False

    def reset(self) -> None:
        """Forget the memory: the next call begins new episodes."""
        self._started = False

    def __call__(self, obs: np.ndarray, episode_start: Any = None) -> np.ndarray:
        def step(x: torch.Tensor) -> torch.Tensor:
            n = x.shape[0]
            if not self._started:
                first = np.ones(n, dtype=bool)
            elif episode_start is None:
                first = np.zeros(n, dtype=bool)
            else:
                first = np.broadcast_to(np.asarray(episode_start, dtype=bool).reshape(-1), (n,)).copy()
            self._started = True
            return self._policy(x, torch.as_tensor(first, device=x.device))

        return self.agent._apply(obs, step)


class Agent:
    """An algorithm bound to an environment, with a run directory.

    Args:
        algo: registered algorithm name (``polyrl list``).
        env: Gymnasium environment id (offline: for evaluation only; default the dataset's ``env_id``).
        dataset: offline algorithms' training data: a :class:`Dataset`, the path of a saved one, or a
            Minari dataset (directory or local id).
        seed: seeds network init, the environments and every sampler.
        device: torch device (``"cpu"``, ``"cuda"``, ...).
        run_dir: where logs and checkpoints go (default ``runs/<algo>-<env>-s<seed>-<time>``).
        vectorization: ``"sync"`` or ``"async"`` training envs.
        env_kwargs: keyword arguments for ``gymnasium.make``.
        settings: evaluation / checkpoint / logging cadence (:class:`TrainSettings`).
        **config: fields of the algorithm's ``Config`` dataclass.
    """

    def __init__(
        self,
        algo: str,
        env: str | None = None,
        *,
        dataset: str | Path | Dataset | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        run_dir: str | Path | None = None,
        vectorization: str = "sync",
        env_kwargs: dict[str, Any] | None = None,
        settings: TrainSettings | None = None,
        **config: Any,
    ) -> None:
        self.algo_cls = algos.get(algo)
        self.cfg = self.algo_cls.Config.from_dict(config)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.vectorization = vectorization
        self.env_kwargs = dict(env_kwargs or {})
        self.settings = settings or TrainSettings()
        self.run_dir: Path | None = Path(run_dir) if run_dir is not None else None
        self.dataset_path = str(dataset) if isinstance(dataset, (str, Path)) else None
        self.dataset = load_any(dataset) if isinstance(dataset, (str, Path)) else dataset
        if self.dataset is not None and self.algo_cls.regime != "offline":
            raise ConfigError(f"{self.algo_cls.name} learns online and takes no dataset; "
                              f"offline algorithms: {', '.join(n for n, c in algos.REGISTRY.items() if c.regime == 'offline')}")
        if env is None:
            env = self.dataset.env_id if self.dataset is not None else None
            if env is None:
                raise ConfigError("no environment given" + (" and the dataset names none" if self.dataset is not None else "")
                                  + "; pass env=ID (CLI: --env ID)")
        probe = VecEnv(env, 1, env_kwargs=self.env_kwargs)  # validates the id and reads the spaces
        self.env_id, self.spec = probe.env_id, probe.spec
        self._env_arg = env  # as given: a "module:Id" keeps its module, so loading the checkpoint imports it again
        probe.close()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seeding.stream(self.seed, "init"))  # network init depends on the seed only, not on the caller's RNG
            self.algo = self.algo_cls(self.cfg, self.spec, self.device, clock=Clock())
        self.obs_norm = RunningNorm(self.spec.obs_shape, enabled=self.cfg.normalize_obs).to(self.device)
        if self.dataset is not None:
            self.dataset.check_spec(self.spec)
            if self.cfg.normalize_obs:  # offline: the dataset's statistics, fixed
                mean, var = self.dataset.obs_stats()
                self.obs_norm.set(mean, var, count=len(self.dataset))
                self.obs_norm.frozen = True
            self.algo.prepare(self.dataset, self.obs_norm)
        self.trainer: Trainer | None = None
        self._pending_resume: Any | None = None
        self._resumed_settings: TrainSettings | None = None  # a resumed run's recorded settings, until learn() runs
        self._lock: RunLock | None = None
        self._eval_env: VecEnv | None = None

    # -- training ----------------------------------------------------------------------------
    def learn(self, steps: int | None = None, **settings: Any) -> Agent:
        """Train for ``steps`` more env steps, or gradient updates offline (``None``: continue a resumed run).

        Annealing schedules (PPO's learning rate and clip range, DQN's epsilon,
        Uni-O4's phase split) are fractions of this call's target, so give the
        whole budget to one call to get the schedule the paper describes (a
        second call continues from where the first left the fraction). Ends with an
        evaluation and a checkpoint. Keyword arguments override
        :class:`TrainSettings` fields for this and later calls.
        """
        if settings:
            new = replace(self.settings, **settings)
            if self._resumed_settings is not None:  # say once, in one line, what makes the result differ
                for line in self._resumed_settings.changes_on_resume(new):
                    warnings.warn(line, stacklevel=2)
                self._resumed_settings = None
            self.settings = new
        if self.trainer is None:
            self.trainer = Trainer(build_run(self), self.settings)
            if self._pending_resume is not None:
                self.trainer.load_state_dict(self._pending_resume)
                self._pending_resume = None
        self.trainer.settings = self.settings
        done = self.trainer.progress()
        if steps is None:
            target = self.trainer.target
            if target <= done:
                raise ValueError("nothing to resume: give the number of steps to train")
        else:
            target = done + int(steps)
        self.trainer.run(target)
        return self

    def start_online(self) -> Agent:
        """Hand an offline-trained agent over to the environment: later ``learn`` calls count env steps.

        The policy, critics and the (frozen) observation normaliser carry over
        unchanged; what changes is where batches come from (the algorithm's
        ``online_regime``: a replay buffer mixed with the dataset for IQL,
        TD3+BC and PRDC, on-policy rollouts for Uni-O4). With a run directory,
        the offline agent is first saved to ``run_dir/handoff`` (unless that
        exists), so the policy fine-tuning started from is kept.
        """
        if self.algo.online:
            raise ConfigError(f"{self.algo.name} on {self.env_id} already learns online")
        if self.algo_cls.online_regime is None:
            able = ", ".join(n for n, c in algos.REGISTRY.items() if c.online_regime is not None)
            raise ConfigError(f"{self.algo.name} has no online phase; algorithms that continue online: {able}")
        if self.run_dir is not None and not (self.run_dir / "handoff").exists():
            self.save(self.run_dir / "handoff")
        if self.trainer is not None:
            self.trainer.close()
            self.trainer = None
        self._pending_resume = None
        self._resumed_settings = None  # a new phase: its settings are the caller's, not the offline phase's
        self.algo.start_online()
        self.algo.clock.env_steps = 0  # the online phase counts its env steps from 0
        return self

    def run_parts(self) -> RunParts:
        """The parts of a run of this agent (:func:`build_run`)."""
        return build_run(self)

    @property
    def progress(self) -> int:
        """Steps trained in the current phase, in the unit ``learn`` counts: env steps online, gradient updates offline."""
        return self.algo.clock.progress(self.algo.online)

    @property
    def phase(self) -> str:
        """``"offline"`` while learning from the dataset, ``"online"`` while learning from the environment."""
        return "online" if self.algo.online else "offline"

    # -- acting ------------------------------------------------------------------------------
    def act(self, obs: np.ndarray, deterministic: bool = True, preference: Any = None) -> np.ndarray:
        """Actions in the env's action space for raw observations (one ``[*O]`` or a batch ``[B, *O]``).

        Memoryless: a recurrent agent (``dreamer``) acts as at an episode's first step; run episodes with
        :meth:`policy`, which carries its memory.

        ``preference`` (``[K]`` weights over the objectives) selects the policy a
        multi-objective algorithm serves; it implies deterministic actions.
        """
        if preference is not None:
            return self._apply(obs, preference_policy(self.algo, self._preference(preference)))
        return self._apply(obs, lambda x: self.algo.act(x, deterministic=deterministic))

    def _apply(self, obs: np.ndarray, policy: Any) -> np.ndarray:
        """Env actions of ``policy`` (normalised obs tensor ``[B, *O]`` -> normalised actions) for one raw observation
        ``[*O]`` or a batch ``[B, *O]``."""
        obs = np.asarray(obs, dtype=np.float32)
        single = obs.shape == self.spec.obs_shape
        x = torch.as_tensor(obs[None] if single else obs, device=self.device)
        with torch.no_grad():
            action = policy(self.obs_norm(x)).cpu().numpy()
        action = self._env_for_actions().to_env_action(action)
        return action[0] if single else action

    def policy(self, deterministic: bool = True) -> EpisodePolicy:
        """A policy to run whole episodes with: raw observations in, env actions out, keeping the agent's memory
        between calls (a world model's recurrent state, per env copy). :meth:`act` is memoryless: for a recurrent
        agent every call acts as at an episode's first step."""
        return EpisodePolicy(self, deterministic)

    def act_normalized(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Normalised actions for a batch of raw observations (what a VecEnv steps with)."""
        x = self.obs_norm(torch.as_tensor(obs, device=self.device))
        return self.algo.act(x, deterministic=deterministic).cpu().numpy()

    def _env_for_actions(self, n_envs: int = 1) -> VecEnv:
        """A separate env for evaluation and action rescaling, rebuilt when a different width is needed."""
        if self._eval_env is None or (n_envs > 1 and self._eval_env.num_envs != n_envs):
            if self._eval_env is not None:
                self._eval_env.close()
            self._eval_env = VecEnv(self.env_id, n_envs, env_kwargs=self.env_kwargs)
        return self._eval_env

    def evaluate(self, episodes: int = 10, seed: int | None = None, preference: Any = None) -> EvalResult:
        """Mean/std return of ``episodes`` deterministic episodes in a separate env (seeded ``seed`` or ``seed + 10_000``).

        Episodes run on up to 5 env copies at once, each copy running an equal share.
        On a multi-objective env, ``preference`` (``[K]`` weights, default equal)
        selects the served policy and scalarises the returns (``EvalResult.returns``);
        ``EvalResult.mean_vector`` holds the per-objective mean return.
        """
        if preference is None:  # a fresh episode policy: recurrent agents keep per-copy memory, cleared at episode starts
            env, policy = self._env_for_actions(min(max(episodes, 1), 5)), episode_policy(self.algo, deterministic=True)
            return self.evaluate_policy(lambda x: policy(x, torch.as_tensor(env.episode_start, device=self.device)), episodes, seed)
        w = self._preference(preference)
        return self.evaluate_policy(preference_policy(self.algo, w), episodes, seed, weights=w)

    def evaluate_policy(self, policy: Any, episodes: int = 10, seed: int | None = None, *, gamma: float = 1.0,
                        weights: np.ndarray | None = None) -> EvalResult:
        """Like :meth:`evaluate`, for another deterministic ``policy`` (normalised obs tensor -> normalised action tensor),
        e.g. one of ``polyrl.algos.base.candidates(agent.algo)``; returns discounted by ``gamma``, vector returns scalarised by ``weights``."""
        env = self._env_for_actions(min(max(episodes, 1), 5))

        def act(obs: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return policy(self.obs_norm(torch.as_tensor(obs, device=self.device))).cpu().numpy()

        return run_episodes(env, act, episodes, seeding.stream(self.seed, "eval") if seed is None else seed, gamma=gamma, weights=weights)

    def _preference(self, preference: Any) -> np.ndarray:
        """Validate a preference over the env's objectives: ``K`` non-negative weights, normalised to sum to 1."""
        k = self.spec.reward_dim
        w = np.asarray([float(x) for x in (preference.split(",") if isinstance(preference, str) else preference)], dtype=np.float64)
        if not k:
            raise ConfigError(f"{self.env_id} has a scalar reward; a preference applies to multi-objective envs only")
        if w.shape != (k,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(f"preference {preference!r} must be {k} non-negative weights, one per objective of {self.env_id} "
                              f"(e.g. {','.join(['0.5'] * k) if k == 2 else ','.join([f'{1 / k:.3g}'] * k)})")
        return w / w.sum()

    # -- persistence -------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {
            "algo": self.algo_cls.name, "env": self._env_arg, "seed": self.seed, "config": self.cfg.to_dict(),
            "spec": self.spec.to_json(), "env_kwargs": self.env_kwargs, "vectorization": self.vectorization,
            "env_steps": self.algo.env_steps, "updates": self.algo.n_updates, "dataset": self.dataset_path, "phase": self.phase,
            "settings": asdict(self.settings),
            "polyrl_version": __version__, "torch_version": torch.__version__,
        }

    def _weights(self) -> dict[str, torch.Tensor]:
        weights = self.algo.weights()
        weights.update({NORM_PREFIX + k: v for k, v in self.obs_norm.state_dict().items()})
        return weights

    def _resume_state(self) -> dict[str, Any]:
        return {"optimizers": self.algo.optimizer_state(), "counters": self.algo.counters(),
                "trainer": self.trainer.state_dict() if self.trainer is not None else None}

    def save(self, path: str | Path | None = None, *, resume: bool = True) -> Path:
        """Write a checkpoint directory (atomically) and return its path.

        Without ``path``, writes the next checkpoint of the run directory.
        ``resume=False`` leaves out optimiser, RNG and replay state (deployment only).
        """
        if path is None:
            return self.write_run_checkpoint(self.algo.env_steps)
        return write_checkpoint(path, self.meta(), self._weights(), self._resume_state() if resume else None)

    def ensure_run_dir(self) -> Path:
        """Create the run directory (and its ``run.json``) on first use, and hold its lock (one writer per run
        directory, :mod:`polyrl.train.lock`) until :meth:`close` or the end of the process."""
        if self.run_dir is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.run_dir = Path("runs") / f"{self.algo_cls.name}-{self.env_id.replace('/', '_')}-s{self.seed}-{stamp}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._lock is None or self._lock.path.parent != self.run_dir.resolve():
            self._lock = RunLock(self.run_dir).acquire()
        run_json = self.run_dir / "run.json"
        if not run_json.exists():
            info = self.meta() | {"python": platform.python_version(),
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            info.pop("env_steps")
            write_text_atomic(run_json, json.dumps(info, indent=2, sort_keys=True))
        return self.run_dir

    def write_run_checkpoint(self, step: int, keep: int = 2) -> Path:
        # ``step`` is the trainer's progress: env steps online, gradient updates offline.
        """Write ``run_dir/checkpoints/step_<step>``, point ``LATEST`` at it and prune old ones."""
        ckdir = self.ensure_run_dir() / "checkpoints"
        for stale in ckdir.glob(".*step_*.*-*") if ckdir.is_dir() else ():  # a write a killed process left unfinished
            shutil.rmtree(stale, ignore_errors=True)  # (we hold the run's lock: nobody else is writing here)
        # an offline algorithm's online phase counts env steps from 0 again: keep its names apart and later
        prefix = "online_step_" if self.algo.online and self.algo_cls.regime == "offline" else "step_"
        path = self.save(ckdir / f"{prefix}{step:010d}")
        write_text_atomic(ckdir / LATEST, path.name)
        if keep > 0:
            for old in list_checkpoints(ckdir.parent)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def latest_checkpoint(self) -> Path | None:
        if self.run_dir is None:
            return None
        try:
            return resolve(self.run_dir)
        except CheckpointError:
            return None

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu", resume: bool = True,
             run_dir: str | Path | None = None) -> Agent:
        """Rebuild an agent from a checkpoint or run directory (its latest checkpoint).

        With ``resume`` (default) optimiser, RNG and replay state are restored
        so ``learn()`` continues exactly where the checkpoint left off. Logs of
        further training go to ``run_dir`` (default: the run the checkpoint belongs to).
        """
        ckpt = resolve(path)
        meta, weights, resume_state = read_checkpoint(ckpt, with_resume=resume)
        if run_dir is None and ckpt.parent.name == "checkpoints":
            run_dir = ckpt.parent.parent
        dataset = meta.get("dataset")
        if dataset is not None and not Path(dataset).exists():
            if resume:
                raise CheckpointError(f"the run trained on {dataset}, which no longer exists; "
                                      "restore it to resume, or load with resume=False to evaluate or deploy")
            dataset = None
        if not resume:
            dataset = None  # evaluation and deployment need no training data
        try:
            agent = cls(meta["algo"], meta["env"], dataset=dataset, seed=meta["seed"], device=device, run_dir=run_dir,
                        vectorization=meta.get("vectorization", "sync"), env_kwargs=meta.get("env_kwargs"), **meta["config"])
        except KeyError as e:
            raise CheckpointError(f"{ckpt / 'agent.json'} lacks field {e}; the checkpoint is corrupt or from another tool") from None
        norm = {k[len(NORM_PREFIX):]: v for k, v in weights.items() if k.startswith(NORM_PREFIX)}
        try:
            agent.algo.load_weights({k: v.to(agent.device) for k, v in weights.items() if not k.startswith(NORM_PREFIX)})
            agent.obs_norm.load_state_dict({k: v.to(agent.device) for k, v in norm.items()})
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"{ckpt / 'model.safetensors'} does not match the {meta['algo']} network in agent.json ({str(e).splitlines()[0]})") from None
        agent.algo.clock.env_steps = int(meta.get("env_steps", 0))
        agent.algo.clock.updates = int(meta.get("updates", 0))
        agent.algo.online = agent.algo.online or meta.get("phase") == "online"
        recorded = meta.get("settings")
        if recorded is None and run_dir is not None and (Path(run_dir) / "run.json").exists():  # checkpoints of 0.1.0
            recorded = json.loads((Path(run_dir) / "run.json").read_text()).get("settings")
        if recorded is not None:  # a run keeps its own cadence: the checkpoint schedule is part of its trajectory
            agent.settings = TrainSettings.from_json(recorded)
        if resume_state is not None:
            agent._resumed_settings = agent.settings
            agent.algo.load_optimizer_state(resume_state["optimizers"])
            agent.algo.load_counters(resume_state["counters"])
            agent._pending_resume = resume_state["trainer"]
        return agent

    def close(self) -> None:
        """Close environments and log files, and release the run directory's lock."""
        if self.trainer is not None:
            self.trainer.close()
        if self._eval_env is not None:
            self._eval_env.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __repr__(self) -> str:
        return f"Agent({self.algo_cls.name!r}, env={self.env_id!r}, seed={self.seed}, steps={self.algo.env_steps})"


def build_run(agent: Agent) -> RunParts:
    """The whole run, composed in one place: the agent's algorithm (and its clock), the training envs (online), the
    data source of the algorithm's current regime, the evaluator (a separate env), and the checkpointer (the run
    directory). ``Trainer(build_run(agent), settings)`` drives them; the trainer adds its logger when it first runs."""
    algo = agent.algo
    env = VecEnv(agent.env_id, env_copies(algo), vectorization=agent.vectorization, env_kwargs=agent.env_kwargs) if algo.online else None
    source = make_source(algo, agent.obs_norm, env, agent.seed, agent.dataset)
    evaluator = Evaluator(
        report=agent.evaluate,
        for_algo=lambda policy, episodes, gamma=1.0: agent.evaluate_policy(policy, episodes, seed=seeding.stream(agent.seed, "algo_eval"), gamma=gamma),
        env_id=agent.env_id)
    checkpointer = Checkpointer(run_dir=agent.ensure_run_dir, write=lambda step, keep: agent.write_run_checkpoint(step, keep=keep),
                                latest=agent.latest_checkpoint)
    return RunParts(algo, source, env, evaluator, checkpointer, seed=agent.seed, title=f"{algo.name} {agent.env_id}")


def make(algo: str, env: str | None = None, *, seed: int = 0, device: str | torch.device = "cpu", **kwargs: Any) -> Agent:
    """Create an :class:`Agent`; ``kwargs`` are Agent options (``dataset=``, ``run_dir=``, ...) and config fields."""
    return Agent(algo, env, seed=seed, device=device, **kwargs)


def load(path: str | Path, **kwargs: Any) -> Agent:
    """Load an :class:`Agent` from a checkpoint or run directory (see :meth:`Agent.load`)."""
    return Agent.load(path, **kwargs)
