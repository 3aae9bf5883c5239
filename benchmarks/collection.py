"""Collection throughput: env steps/s of one rollout actor against the simulator and RLlib.

For each task and number of environments (1 and 8), in one process with one torch thread
(what a Ray actor with num_cpus=1 gets), contenders interleaved round by round:
    raw       the simulator loop with random actions over `TaskSpec.make_env` envs: the limit;
    mlp       frontier's RolloutWorker with an MLP expert acting (the zoo's expert for the task
              if there is one, else an MLP of the zoo's shape with random weights: same compute);
    odt       frontier's RolloutWorker with the ODT policy (default ModelConfig, context K),
              exact inference (`Policy(inference="last")`, the default);
    odt_full  the same with the whole-window forward (`inference="full"`): the before;
    rllib     RLlib's SingleAgentEnvRunner.sample() with its default PPO model (new API stack).
Each call of a contender runs a fixed number of env steps and returns its steps/s; the median
over rounds is the figure.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from frontier.benchmarks.common import (figure, interleaved, machine, machine_line, markdown_table, median, save, timed,
                               write_results)

TASKS = ("Hopper-v5", "HalfCheetah-v5", "ALE/Breakout-ram-v5")
NUM_ENVS = (1, 8)
CONTENDERS = ("raw", "mlp", "odt", "odt_full", "rllib")
LABELS = {
    "raw": "(a) raw simulator, random actions",
    "mlp": "(b) RolloutWorker + MLP expert",
    "odt": "(c) RolloutWorker + ODT (exact, default)",
    "odt_full": "(c) before: ODT whole-window forward",
    "rllib": "(d) RLlib SingleAgentEnvRunner, PPO default",
}
# (numerator, denominator, envs, target): the targets.
TARGETS = (
    ("mlp", "rllib", 1, 1.5),
    ("mlp", "rllib", 8, 1.5),
    ("mlp", "raw", 8, 0.6),
    ("odt", "rllib", 8, 0.5),
)
MLP_HIDDEN = (64, 64)  # the zoo's policy shape (envs/zoo cards: hidden 64,64, tanh)


class MLPActor:
    """The acting interface of `agents.policy.Policy` served by an exported MLP policy, so a
    RolloutWorker steps its envs with one batched MLP forward per step."""

    def __init__(self, policy):
        self.policy = policy
        self.discrete = policy.head == "categorical"

    def reset(self, slot: int, task_index: int, target_return: float):
        pass  # a Markov policy keeps no per-episode state

    def act(self, slots, observations, deterministic: bool) -> list:
        a = self.policy.act(np.stack(observations))  # (S, A) float32 or (S,) int64
        return [int(x) for x in a] if self.discrete else list(a)

    def rewards(self, slots, rewards):
        pass


def mlp_policy(task: str, seed: int = 0):
    """(MLPPolicy, description): the zoo's expert for `task`, or a random-weight MLP of its shape."""
    from frontier.envs.experts.rl import MLPPolicy, zoo_policy
    from frontier.envs.registry import get_task

    card = zoo_policy(task)
    if card is not None:
        return MLPPolicy.load(card["path"]), f"zoo expert {card['id']}"
    info = get_task(task).info()
    torch.manual_seed(seed)
    dims = [info.observation.dim, *MLP_HIDDEN]
    layers: list[torch.nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    if info.continuous:
        head, action_dim, out = "gaussian", info.action.dim, 2 * info.action.dim
    else:
        head, action_dim, out = "categorical", info.action.n, info.action.n
    layers.append(torch.nn.Linear(dims[-1], out))
    d = info.observation.dim
    obs_norm = {"mean": [0.0] * d, "std": [1.0] * d, "eps": 1e-8, "clip": 10.0}
    net = torch.nn.Sequential(*layers)
    card = {"id": f"random-{task}-mlp", "task": task, "algorithm": "none", "policy": {}}
    hidden = "x".join(map(str, MLP_HIDDEN))
    return MLPPolicy(net, head, action_dim, obs_norm, card), f"random-weight MLP {hidden} tanh (zoo shape; no zoo expert)"


# ---------------------------------------------------------------------------------------
# Contenders: each returns (run, counts): `run()` runs `steps` env steps and returns steps/s;
# counts {"steps", "episodes"} add up the timed steps and the episodes they finished (episode
# length matters: a reset costs more than a step, and random policies end Hopper episodes early).


def raw_loop(task: str, num_envs: int, steps: int, seed: int = 0):
    from frontier.envs.registry import get_task

    spec = get_task(task)
    envs = [spec.make_env(seed=seed + i) for i in range(num_envs)]
    counts = {"steps": 0, "episodes": 0}

    def run() -> float:
        t0 = time.perf_counter()
        done = episodes = 0
        while done < steps:
            for env in envs:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if terminated or truncated:
                    env.reset()
                    episodes += 1
                done += 1
        rate = done / (time.perf_counter() - t0)
        counts["steps"] += done
        counts["episodes"] += episodes
        return rate

    return run, counts


def worker_loop(task: str, num_envs: int, steps: int, policy: str, seed: int = 0):
    """RolloutWorker.collect in explore mode; `policy`: "mlp" or an ODT inference mode."""
    from frontier.agents.model import ModelConfig
    from frontier.agents.policy import Policy
    from frontier.distributed.rollout import RolloutWorker

    worker = RolloutWorker([task], [task], ModelConfig(), "explore", num_envs, seed)
    if policy == "mlp":
        worker.policy = MLPActor(mlp_policy(task, seed)[0])
    else:
        worker.policy = Policy(worker.model, worker.policy.tasks, num_envs, seed=seed, inference=policy)
    worker.collect(min(steps, 50))  # envs reset, first forward done
    counts = {"steps": 0, "episodes": 0}

    def run() -> float:
        start = worker.tally.env_steps
        t0 = time.perf_counter()
        episodes = worker.collect(steps)
        rate = (worker.tally.env_steps - start) / (time.perf_counter() - t0)
        counts["steps"] += worker.tally.env_steps - start
        counts["episodes"] += len(episodes)
        return rate

    return run, counts


def rllib_loop(task: str, num_envs: int, steps: int, seed: int = 0):
    """RLlib's env runner, local (no remote runners), with the task's own `TaskSpec.make_env`."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
    from ray.tune.registry import register_env

    from frontier.envs.registry import get_task

    name = f"frontier-bench/{task}"
    register_env(name, lambda env_config: get_task(task).make_env())
    config = (PPOConfig().environment(name)
              .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs)
              .debugging(seed=seed))
    runner = SingleAgentEnvRunner(config=config)
    runner.sample(num_timesteps=min(steps, 50))
    counts = {"steps": 0, "episodes": 0}

    def run() -> float:
        t0 = time.perf_counter()
        episodes = runner.sample(num_timesteps=steps)
        rate = sum(len(e) for e in episodes) / (time.perf_counter() - t0)
        counts["steps"] += sum(len(e) for e in episodes)
        counts["episodes"] += sum(e.is_done for e in episodes)
        return rate

    return run, counts


def thread_choice(task: str, num_slots: int, acts: int, rounds: int, seed: int = 0) -> dict:
    """ms per `Policy.act` (exact inference, full windows) with 1 and with 2 torch threads, interleaved."""
    from frontier.agents.model import DecisionTransformer, ModelConfig
    from frontier.agents.policy import Policy
    from frontier.envs.registry import get_task

    spec = get_task(task)
    info = spec.info()
    torch.manual_seed(seed)
    policy = Policy(DecisionTransformer(ModelConfig(), [info]), [info], num_slots, seed=seed)
    env = spec.make_env(seed=seed)
    obs = [env.observation_space.sample() for _ in range(num_slots)]
    env.close()
    slots = list(range(num_slots))
    for s in slots:
        policy.reset(s, 0, spec.explore_target)
    for _ in range(policy.K):  # fill the windows
        policy.act(slots, obs, deterministic=False)
        policy.rewards(slots, [0.0] * num_slots)

    def with_threads(n: int):
        def call() -> float:
            torch.set_num_threads(n)
            try:
                return 1e3 * timed(lambda: [policy.act(slots, obs, deterministic=False) for _ in range(acts)]) / acts
            finally:
                torch.set_num_threads(1)
        return call

    figures = interleaved({"1": with_threads(1), "2": with_threads(2)}, rounds)
    return {"task": task, "slots": num_slots, "ms_per_act": {k: median(v) for k, v in figures.items()}}


def reset_cost(task: str, resets: int = 5, seed: int = 0) -> dict:
    """Median ms of one env reset with a new seed and without one (ALE reloads its ROM to reseed)."""
    from frontier.envs.registry import get_task

    env = get_task(task).make_env(seed=seed)
    with_seed = [1e3 * timed(lambda: env.reset(seed=seed + 1 + j)) for j in range(resets)]
    without = [1e3 * timed(env.reset) for _ in range(resets)]
    env.close()
    return {"task": task, "seeded_reset_ms": median(with_seed), "unseeded_reset_ms": median(without)}


# ---------------------------------------------------------------------------------------


def measure(tasks, num_envs, steps: int, rounds: int, contenders=CONTENDERS) -> dict:
    """steps/s per task, env count and contender: {"<task>": {"<n>": {"<contender>": {median, all}}}}."""
    results: dict = {}
    for task in tasks:
        results[task] = {}
        for n in num_envs:
            makers = {
                "raw": lambda: raw_loop(task, n, steps),
                "mlp": lambda: worker_loop(task, n, steps, "mlp"),
                "odt": lambda: worker_loop(task, n, steps, "last"),
                "odt_full": lambda: worker_loop(task, n, steps, "full"),
                "rllib": lambda: rllib_loop(task, n, steps),
            }
            made = {c: makers[c]() for c in contenders}
            figures = interleaved({c: run for c, (run, _) in made.items()}, rounds)
            results[task][str(n)] = {
                c: {"steps_per_s": median(v), "all": v,
                    # None: no episode ended in the timed steps
                    "mean_episode_length": made[c][1]["steps"] / made[c][1]["episodes"] if made[c][1]["episodes"] else None}
                for c, v in figures.items()}
            line = ", ".join(f"{c} {median(v):,.0f}" for c, v in figures.items())
            print(f"  {task} x{n}: {line} steps/s", flush=True)
    return results


def ratios(results: dict) -> list[dict]:
    rows = []
    for task, by_n in results.items():
        for num, den, n, target in TARGETS:
            figs = by_n.get(str(n))
            if figs is None or num not in figs or den not in figs:
                continue
            r = figs[num]["steps_per_s"] / figs[den]["steps_per_s"]
            rows.append({"task": task, "ratio": f"{num}/{den}", "envs": n, "value": r, "target": target,
                         "met": bool(r >= target)})
    return rows


def plot(results: dict, path: Path) -> None:
    fig, ax = figure()
    fig.set_size_inches(9, 5.2)
    groups = [(t, n) for t in results for n in results[t]]
    contenders = [c for c in CONTENDERS if c in next(iter(results.values()))[groups[0][1]]]
    width = 0.8 / len(contenders)
    for j, c in enumerate(contenders):
        ys = [results[t][n][c]["steps_per_s"] for t, n in groups]
        ax.bar(np.arange(len(groups)) + (j - (len(contenders) - 1) / 2) * width, ys, width, label=LABELS[c])
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([f"{t.split('/')[-1]}\n{n} env{'s' if n != '1' else ''}" for t, n in groups], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("env steps / s (one actor, one thread)")
    ax.set_title("Collection throughput (median of interleaved rounds)", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    save(fig, path)


def run(quick: bool, out: Path, tasks=TASKS, num_envs=NUM_ENVS, steps: int | None = None,
        rounds: int | None = None) -> dict:
    torch.set_num_threads(1)
    steps = steps or (100 if quick else 1500)
    rounds = rounds or (1 if quick else 5)
    mach = machine()
    print(f"collection: {len(tasks)} tasks x {list(num_envs)} envs, {steps} steps per call, {rounds} rounds, "
          f"1 torch thread", flush=True)
    t0 = time.perf_counter()
    results = measure(tasks, num_envs, steps, rounds)
    ratio_rows = ratios(results)
    speedup = {t: {n: results[t][n]["odt"]["steps_per_s"] / results[t][n]["odt_full"]["steps_per_s"]
                   for n in results[t]} for t in results}
    mlp_kind = {t: mlp_policy(t)[1] for t in tasks}
    wall = time.perf_counter() - t0

    header = ["task", "envs", *[LABELS[c] for c in CONTENDERS]]
    rows = [[t, int(n), *[results[t][n][c]["steps_per_s"] for c in CONTENDERS]] for t in results for n in results[t]]
    length_rows = [[t, int(n), *[("-" if results[t][n][c]["mean_episode_length"] is None
                                  else round(results[t][n][c]["mean_episode_length"])) for c in CONTENDERS]]
                   for t in results for n in results[t]]
    ratio_table = [[r["task"], r["ratio"], r["envs"], r["value"], f">= {r['target']}", "MET" if r["met"] else "NOT MET"]
                   for r in ratio_rows]
    speed_rows = [[t, int(n), s] for t in speedup for n, s in speedup[t].items()]
    resets = [reset_cost(t) for t in tasks]
    threads = thread_choice(tasks[0], max(num_envs), 5 if quick else 50, 1 if quick else 5)
    reset_rows = [[r["task"], r["seeded_reset_ms"], r["unseeded_reset_ms"]] for r in resets]
    md = f"""
Command: `frontier bench collection{' --quick' if quick else ''}` ({steps} env steps per call, {rounds} interleaved
rounds, median reported; one process, `torch.set_num_threads(1)` as in a Ray actor with num_cpus=1; wall
{wall:.0f} s). The machine is shared: figures drift with background load, ratios between contenders measured
in the same rounds are what to read.

MLP in the loop: {'; '.join(f'{t}: {k}' for t, k in mlp_kind.items())}. The worker's policy object is
replaced by `MLPActor` (this file): one batched MLP forward per step over all envs; the worker's env loop,
episode building and fault checks are unchanged. RLlib: its default PPO RLModule for the task's spaces,
local env runner (num_env_runners=0), `num_envs_per_env_runner` = envs, gymnasium sync vector env over the
same `TaskSpec.make_env`.
Atari task: ALE/Breakout-ram-v5 (RAM observations scaled to [0, 1], frame skip 4, AutoServe).
ODT: default ModelConfig (embed 128, 3 layers, 4 heads, context K=20), random initial weights, sampled actions.

## Env steps per second

{markdown_table(header, rows)}

## Mean episode length in the timed steps (steps / finished episodes; "-": none finished)

{markdown_table(["task", "envs", *CONTENDERS], length_rows)}

## Targets

{markdown_table(["task", "ratio", "envs", "value", "target", "result"], ratio_table)}

## ODT inference, before and after (same run): exact last-step inference / whole-window forward

{markdown_table(["task", "envs", "speed-up"], speed_rows)}

## Torch threads for ODT inference ({threads['task']}, {threads['slots']} slots, full windows, ms per act)

1 thread: {threads['ms_per_act']['1']:.2f} ms; 2 threads: {threads['ms_per_act']['2']:.2f} ms. Every contender above runs
with 1 thread, as a Ray actor with num_cpus=1 does (Ray sets OMP_NUM_THREADS=1 there).

## Env reset cost (ms, median of 5): why the rollout worker no longer reseeds every episode

Each env is seeded once when built and its episodes continue that stream (provenance: seed, episode).
Reseeding ALE reloads the ROM.

{markdown_table(["task", "reset(seed=...)", "reset()"], reset_rows)}

![collection](collection.png)
"""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out / "collection.png")
    data = write_results(out, "collection", {
        "machine": mach,
        "command": f"frontier bench collection{' --quick' if quick else ''}",
        "steps_per_call": steps,
        "rounds": rounds,
        "torch_threads": 1,
        "wall_s": wall,
        "mlp_policy": mlp_kind,
        "contenders": LABELS,
        "results": results,
        "ratios": ratio_rows,
        "odt_speedup_last_vs_full": speedup,
        "reset_cost": resets,
        "thread_choice": threads,
    }, md)
    print(markdown_table(header, rows))
    print(markdown_table(["task", "ratio", "envs", "value", "target", "result"], ratio_table))
    print(f"machine: {machine_line(mach)}")
    return data
