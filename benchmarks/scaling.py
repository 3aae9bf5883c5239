"""Scaling: env steps/s of the whole collection against the number of rollout actors.

Real Ray actors (`ray.remote(num_cpus=1)` over `RayRolloutWorker`, as the driver makes them),
each stepping `num_envs` environments of one task, all collecting at once; a round asks every
actor of a group for `steps` env steps and times the group until the last one answers
(total steps / wall). Groups of 1, 2 and 4 actors stay alive side by side and are timed in
turn, round after round. Two policies: the ODT policy (exact default inference) and an MLP
expert (the zoo's for the task, else one of its shape; the simulator-bound case).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from frontier.benchmarks.common import figure, machine, machine_line, markdown_table, median, save, write_results

ACTORS = (1, 2, 4)
POLICIES = ("odt", "mlp")
TASK = "Hopper-v5"


def _worker_class():
    import ray

    from frontier.distributed.ray_executor import RayRolloutWorker

    class BenchRolloutWorker(RayRolloutWorker):
        """RayRolloutWorker that can act with an MLP expert instead of the ODT policy."""

        def renice(self, niceness: int) -> int:
            """Ray starts workers at nice 15; the benchmark's driver runs at `niceness` and so should they."""
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
            return os.getpriority(os.PRIO_PROCESS, 0)

        def use_mlp(self, task: str, seed: int) -> None:
            from frontier.benchmarks.collection import MLPActor, mlp_policy

            self.policy = MLPActor(mlp_policy(task, seed)[0])

        def timed_collect(self, steps: int) -> int:
            before = self.tally.env_steps
            self.collect(steps)
            return self.tally.env_steps - before

    return ray.remote(num_cpus=1)(BenchRolloutWorker)


def run(quick: bool, out: Path, actors=ACTORS, policies=POLICIES, task: str = TASK, num_envs: int | None = None,
        steps: int | None = None, rounds: int | None = None) -> dict:
    import ray

    from frontier.agents.model import ModelConfig

    if quick and tuple(actors) == ACTORS:
        actors = (1, 2)
    num_envs = num_envs or (4 if quick else 8)
    steps = steps or (100 if quick else 3000)
    rounds = rounds or (1 if quick else 5)
    mach = machine()
    cores = os.cpu_count() or 1
    print(f"scaling: {task}, {num_envs} envs per actor, actors {list(actors)}, policies {list(policies)}, "
          f"{steps} steps per actor per round, {rounds} rounds", flush=True)
    t0 = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        # Logical CPUs for every actor of every group: they are all alive at once (only one
        # group works at a time); the physical cores are what limits the curve.
        ray.init(address="local", num_cpus=len(policies) * sum(actors), include_dashboard=False,
                 log_to_driver=False)
    try:
        cls = _worker_class()
        groups: dict[tuple[str, int], list] = {}
        index = 0
        for policy in policies:
            for n in actors:
                group = []
                for _ in range(n):
                    a = cls.remote([task], [task], ModelConfig(), "explore", num_envs, 0, index)
                    index += 1
                    if policy == "mlp":
                        a.use_mlp.remote(task, 0)
                    group.append(a)
                groups[(policy, n)] = group
        niceness = os.getpriority(os.PRIO_PROCESS, 0)
        try:
            ray.get([a.renice.remote(niceness) for g in groups.values() for a in g])
        except PermissionError:
            print(f"  actors stay at Ray's worker niceness: lowering it to {niceness} needs privileges", flush=True)
        # Warm-up: every actor built its envs and ran its first forward.
        ray.get([a.timed_collect.remote(min(steps, 50)) for g in groups.values() for a in g])
        figures: dict[tuple[str, int], list[float]] = {k: [] for k in groups}
        for _ in range(rounds):
            for key, group in groups.items():
                t = time.perf_counter()
                done = sum(ray.get([a.timed_collect.remote(steps) for a in group]))
                figures[key].append(done / (time.perf_counter() - t))
    finally:
        if started:
            ray.shutdown()
    wall = time.perf_counter() - t0
    from frontier.benchmarks.collection import mlp_policy

    mlp_kind = mlp_policy(task)[1]

    results = {p: {str(n): {"steps_per_s": median(figures[(p, n)]), "all": figures[(p, n)],
                            "per_actor": median(figures[(p, n)]) / n,
                            "speedup_vs_1": median(figures[(p, n)]) / median(figures[(p, actors[0])])}
                   for n in actors} for p in policies}
    for p in policies:
        print("  " + p + ": " + ", ".join(f"{n} actors {results[p][str(n)]['steps_per_s']:,.0f}" for n in actors)
              + " steps/s", flush=True)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = figure()
    for p in policies:
        ax.plot(actors, [results[p][str(n)]["steps_per_s"] for n in actors], "o-", label=f"{p} policy")
    ax.axvline(cores, color="gray", ls="--", lw=1, label=f"{cores} physical cores")
    ax.set_xticks(list(actors))
    ax.set_xlabel("rollout actors (Ray, num_cpus=1 each)")
    ax.set_ylabel(f"env steps / s ({task}, {num_envs} envs per actor)")
    ax.set_title("Collection scaling (median of interleaved rounds)", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    save(fig, out / "scaling.png")

    header = ["policy", "actors", "env steps/s", "per actor", f"speed-up vs {actors[0]}"]
    rows = [[p, n, results[p][str(n)]["steps_per_s"], results[p][str(n)]["per_actor"],
             results[p][str(n)]["speedup_vs_1"]] for p in policies for n in actors]
    table = markdown_table(header, rows)
    md = f"""
Command: `frontier bench scaling{' --quick' if quick else ''}` ({task}, {num_envs} envs per actor, {steps} env steps
per actor per round, {rounds} interleaved rounds, median; wall {wall:.0f} s). Policies: the ODT policy (default
ModelConfig, exact inference) and, as "mlp", {mlp_kind} (the simulator-bound case).

Actors run at the driver's niceness (Ray starts its workers at nice 15, behind every other job on a shared
machine). This machine has {cores} cores, shared with other jobs (load average {mach['load_average_1m']:.1f} at start):
the curve flattens at the core count — more actors than cores only time-share them. A machine or a
cluster with more cores extends it (actors are independent; each sends whole episodes in chunks).

{table}

![scaling](scaling.png)
"""
    data = write_results(out, "scaling", {
        "machine": mach,
        "command": f"frontier bench scaling{' --quick' if quick else ''}",
        "task": task, "num_envs_per_actor": num_envs, "steps_per_actor_per_round": steps, "rounds": rounds,
        "physical_cores": cores, "wall_s": wall, "mlp_policy": mlp_kind, "results": results,
    }, md)
    print(table)
    print(f"machine: {machine_line(mach)}")
    return data
