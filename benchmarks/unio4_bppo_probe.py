"""Uni-O4 diagnostic: how behaviour PPO moves the BC members' real returns, for a choice of critics.

    python benchmarks/unio4_bppo_probe.py RUN_DIR [key=value ...]

``RUN_DIR`` is a finished offline Uni-O4 run whose behaviour-PPO phase began, for example

    polyrl train unio4 --dataset benchmarks/.work/datasets-v2/hopper-medium --steps 20000 \\
        --batch_size 256 --critic iql --bppo_fraction 0.2 --run-dir runs/u4-iql

The probe keeps the run's BC members (as behaviour PPO began), its dynamics model and, unless told
otherwise, its critics; restarts every member and reference from its BC policy; runs ``steps``
behaviour-PPO updates with the OPE gate (the algorithm's own update and gate); and prints one JSON
line with each reference's real return (``eval_episodes`` deterministic episodes), the gate's
acceptances and the mean action shift from BC. Options (JSON values):

* ``steps`` (1000), ``lr`` (1e-4), ``clip`` (0.25), ``batch`` (256), ``seed`` (0), ``eval_episodes`` (10);
* ``critic``: ``"run"`` (the run's critics, the default), ``"iql"`` or ``"sarsa"`` (fresh 256-256 critics of
  that kind trained ``critic_steps`` updates first; with ``"run"``, ``critic_steps`` > 0 trains the run's
  IQL critics further);
* ``negate_q`` (false): ascend ``-Q`` instead of ``Q`` (a sign check of the critic's advice).

Used for note 1a of docs/algorithms/unio4.md. One torch thread; a few minutes per call on one core
(plus ~1 min per 8000 critic updates).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time

import torch
from torch import nn

import polyrl
from polyrl.algos.base import adam
from polyrl.nets.heads import QEnsemble, ValueNet
from polyrl.types import TransitionBatch

DEFAULTS = {"steps": 1000, "lr": 1e-4, "clip": 0.25, "batch": 256, "seed": 0, "eval_episodes": 10,
            "critic": "run", "critic_steps": 0, "negate_q": False}


class Negated(nn.Module):
    def __init__(self, q: nn.Module) -> None:
        super().__init__()
        self.q = q

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return -self.q(obs, action)


def main() -> None:
    torch.set_num_threads(1)
    run, opts = sys.argv[1], dict(DEFAULTS)
    for kv in sys.argv[2:]:
        key, value = kv.split("=", 1)
        if key not in DEFAULTS:
            raise SystemExit(f"unknown option {key!r}; options: {', '.join(DEFAULTS)}")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    t0 = time.time()
    agent = polyrl.load(run)
    algo, s = agent.algo, agent.algo.state
    if algo.data is None or not bool(s.model_ready):
        raise SystemExit(f"{run}: needs a Uni-O4 run whose behaviour-PPO phase began, loaded with its dataset")
    data, n_data, cfg = algo.data, len(algo.data["obs"]), algo.cfg

    def batch(gen: torch.Generator) -> TransitionBatch:
        idx = torch.randint(n_data, (opts["batch"],), generator=gen)
        return TransitionBatch(data["obs"][idx], data["action"][idx], data["reward"][idx], data["next_obs"][idx],
                               data["terminated"][idx], torch.full((opts["batch"],), cfg.gamma), idx)

    kind = "iql" if opts["critic"] == "run" else opts["critic"]
    if kind not in ("iql", "sarsa"):
        raise SystemExit(f"critic must be 'run', 'iql' or 'sarsa', got {opts['critic']!r}")
    if opts["critic"] != "run":
        torch.manual_seed(opts["seed"] + 2)  # the fresh critics' initial weights (unseeded before 2026-11-22, session 8)
        s.critic = QEnsemble(2, algo.spec.obs_dim, algo.spec.action_dim, (256, 256), cfg.activation)
        s.critic_target = copy.deepcopy(s.critic)
        s.value = ValueNet(algo.spec.obs_dim, (256, 256), cfg.activation)
    algo.cfg = cfg = dataclasses.replace(cfg, critic=kind, bppo_lr=opts["lr"], bppo_clip=opts["clip"])
    if opts["critic_steps"]:
        s.critic.requires_grad_(True)
        s.value.requires_grad_(True)
        s.critic_opt, s.value_opt = adam(s.critic.parameters(), cfg.critic_lr), adam(s.value.parameters(), cfg.critic_lr)
        critic_gen = torch.Generator().manual_seed(opts["seed"] + 1)
        n_updates = algo.n_updates  # the algorithm's own critic update; its target cadence counts from 0 here
        for k in range(opts["critic_steps"]):
            algo.n_updates = k
            algo._critic_step(batch(critic_gen))
        algo.n_updates = n_updates  # the gate seeds its start states from it
        s.critic.requires_grad_(False)
        s.value.requires_grad_(False)
    if opts["negate_q"]:
        s.critic = Negated(s.critic)

    s.policies.load_state_dict(s.bc.state_dict())
    s.references.load_state_dict(s.bc.state_dict())
    s.bppo_opt = adam(s.policies.parameters(), opts["lr"])
    s.best_score.copy_(algo.gate_scores(s.references))
    gen = torch.Generator().manual_seed(opts["seed"])
    torch.manual_seed(opts["seed"])  # behaviour PPO samples actions from the global generator
    accepted = gates = 0
    for step in range(opts["steps"]):
        metrics = algo._behaviour_ppo(batch(gen), step, opts["steps"])
        if "train/gate_replaced" in metrics:
            accepted += int(metrics["train/gate_replaced"])
            gates += cfg.n_policies

    candidates = algo.candidates()
    returns = {name: round(agent.evaluate_policy(candidates[name], opts["eval_episodes"]).mean_return)
               for name in candidates}
    with torch.no_grad():
        obs = data["obs"][:5000]
        shift = float((s.references(obs).mode() - s.bc(obs).mode()).abs().mean())
    print(json.dumps({"run": run, "options": opts, "references": [returns[f"member {i}"] for i in range(cfg.n_policies)],
                      "bc": [returns[f"bc {i}"] for i in range(cfg.n_policies)], "gate_accepted": f"{accepted}/{gates}",
                      "mean_action_shift": round(shift, 4), "time_s": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
