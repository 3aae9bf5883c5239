"""The report of `frontier compare`: costs per arm, curves with IQM and bootstrap CIs, the Pareto
frontier, compute to reach score levels (and success-rate levels for targets that define success,
such as Meta-World's), the transfer matrix; written as report.md, PNGs and
results.json from whatever jobs have finished (a partial run gives a report labelled partial).

Cost of an arm (per seed) = its final run on T + every earlier job it used (source models,
pretraining, selection evaluations) + the expert data it read (each dataset's production
cost pro rata to the episodes used, once per arm) + the experts themselves (zoo card cost
of `rl` sources, once per arm; scripted controllers and filtered random attempts cost no
training, their collection is in the data cost). Reused jobs are charged to every arm
that uses them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from frontier.compare.jobs import job_done
from frontier.compare.plan import Arm, Plan
from frontier.compare.spec import ARMS, CompareSpec, safe
from frontier.compare.stats import bootstrap_ci, compute_to_reach, iqm, pareto_frontier, step_interpolate
from frontier.distributed.monitor import normalized_score, write_json_atomic

SINGLE_POINT_ARMS = ("generalist-zeroshot", "generalist-fewshot")
COLORS = {"scratch": "tab:gray", "specialist": "tab:blue", "related": "tab:green", "generalist": "tab:red",
          "generalist-zeroshot": "tab:red", "generalist-fewshot": "tab:orange"}
GRID_POINTS = 40
TIE = 0.01  # transfer-matrix gains smaller than this (in normalized score) count as no difference


def read_evals(run_dir: Path) -> list[dict]:
    """evals.jsonl of a run, one entry per learner-update count (a resumed run may have logged
    an evaluation twice; the later one, e.g. the final evaluation, wins), in update order."""
    path = Path(run_dir) / "evals.jsonl"
    if not path.is_file():
        return []
    by_updates = {}
    for line in path.read_text().splitlines():
        if line.strip():
            e = json.loads(line)
            by_updates[e["updates"]] = e
    return [by_updates[u] for u in sorted(by_updates)]


def expert_cost(info: dict) -> dict:
    """Cost of training the experts behind a dataset: zoo card costs of `rl` policies, else 0."""
    cost = {"cpu_s": 0.0, "gpu_s": 0.0, "env_steps": 0}
    if info["source"]["kind"] != "rl":
        return cost
    from frontier.envs.experts.rl import zoo_cards

    cards = {c["id"]: c for c in zoo_cards()}
    for policy in info["source"]["policies"]:
        card = cards.get(policy)
        if card is None:
            raise ValueError(f"dataset of {info['task']}: rl policy {policy!r} has no zoo card to charge its cost from")
        cost["cpu_s"] += float(card.get("cpu_s", 0.0))
        cost["gpu_s"] += float(card.get("gpu_s", 0.0))
        cost["env_steps"] += int(card.get("env_steps", 0))
    return cost


def _add_steps(into: dict, steps: dict) -> None:
    for k, v in steps.items():
        into[k] = into.get(k, 0) + int(v)


def arm_offset(out: Path, arm: Arm) -> dict:
    """What the arm paid before its final run: charged jobs, expert data, experts."""
    c = {"learner_flops": 0.0, "learner_device_s": 0.0, "actor_cpu_s": 0.0, "data_cpu_s": 0.0, "expert_cpu_s": 0.0,
         "expert_gpu_s": 0.0, "env_steps_by_source": {}}
    for name in arm.charged:
        summary = json.loads((out / name / "summary.json").read_text())
        comp = summary["compute"]
        c["learner_flops"] += comp["learner_flops"]
        c["learner_device_s"] += comp["learner_device_s"]
        c["actor_cpu_s"] += comp["actor_cpu_s"]
        _add_steps(c["env_steps_by_source"], comp["env_steps_by_source"])
    for task, used in arm.data.items():
        info = json.loads((out / f"seed{arm.seed}/data/{safe(task)}" / "dataset.json").read_text())
        share = used / info["episodes"]
        c["data_cpu_s"] += share * info["cost"]["cpu_s"] + share * info["cost"].get("gpu_s", 0.0)
        _add_steps(c["env_steps_by_source"], {f"data:{info['source']['kind']}": round(share * info["cost"]["env_steps"])})
        e = expert_cost(info)
        c["expert_cpu_s"] += e["cpu_s"]
        c["expert_gpu_s"] += e["gpu_s"]
        _add_steps(c["env_steps_by_source"], {"expert-training": e["env_steps"]})
    return c


def offset_seconds(off: dict) -> float:
    return off["learner_device_s"] + off["actor_cpu_s"] + off["data_cpu_s"] + off["expert_cpu_s"] + off["expert_gpu_s"]


def arm_record(out: Path, arm: Arm, target: str, references: tuple[float, float]) -> dict:
    """One arm of one seed: its curve (flops, seconds, score and success rate per evaluation; the
    success rate None for targets without one) and total cost."""
    off = arm_offset(out, arm)
    final = out / arm.final
    summary = json.loads((final / "summary.json").read_text())
    curve = []
    for e in read_evals(final):
        ret = float(np.mean(e["returns"][target]))
        successes = e.get("successes", {}).get(target)
        curve.append({"updates": e["updates"], "flops": off["learner_flops"] + e["learner_flops"],
                      "seconds": offset_seconds(off) + e["learner_device_s"] + e["actor_cpu_s"],
                      "return": ret, "score": normalized_score(ret, *references),
                      "success": float(np.mean(successes)) if successes else None})
    comp = summary["compute"]
    steps = dict(off["env_steps_by_source"])
    _add_steps(steps, comp["env_steps_by_source"])
    total = {
        "learner_flops": off["learner_flops"] + comp["learner_flops"],
        "learner_device_s": off["learner_device_s"] + comp["learner_device_s"],
        "actor_cpu_s": off["actor_cpu_s"] + comp["actor_cpu_s"],
        "data_cpu_s": off["data_cpu_s"], "expert_cpu_s": off["expert_cpu_s"], "expert_gpu_s": off["expert_gpu_s"],
        "env_steps_by_source": steps, "env_steps": sum(steps.values()),
    }
    total["total_seconds"] = (total["learner_device_s"] + total["actor_cpu_s"] + total["data_cpu_s"]
                              + total["expert_cpu_s"] + total["expert_gpu_s"])
    t = summary["tasks"][target]
    return {"arm": arm.name, "seed": arm.seed, "final_return": t["eval_return_mean"],
            "final_score": t["normalized_score"], "final_episodes": t["eval_episodes"],
            "final_success": t.get("success_rate"),
            "pretraining_flops": off["learner_flops"], "cost": total, "curve": curve}


def aggregate_curve(records: list[dict], axis: str, key: str = "score") -> dict:
    """IQM and 95% bootstrap CI of `key` ("score" or "success") across seeds on a common grid of
    `axis` ("flops" or "seconds"). Each seed's value holds from one evaluation to the next, and its
    final one after its run ended (given more compute the arm still has that model); the grid runs
    from the point where every seed has been evaluated to the last seed's end. (Ending it at the
    first seed's end left it empty when the seeds' seconds did not overlap: mt10-2core's generalist
    took 198-267 s, so it "never reached" any score in seconds.)"""
    curves = [[p for p in r["curve"] if p[key] is not None] for r in records]
    curves = [c for c in curves if c]
    if not curves:
        return {"x": [], "iqm": [], "lo": [], "hi": []}
    start = max(c[0][axis] for c in curves)
    end = max(c[-1][axis] for c in curves)
    xs = np.unique(np.concatenate([[p[axis] for p in c] for c in curves]))
    xs = xs[(xs >= start) & (xs <= end)]
    if len(xs) > GRID_POINTS:
        xs = np.unique(np.concatenate([xs[np.linspace(0, len(xs) - 1, GRID_POINTS).astype(int)], [end]]))
    ys = np.stack([step_interpolate([p[axis] for p in c], [p[key] for p in c], xs) for c in curves])  # (seeds, grid)
    mid = [iqm(ys[:, j]) for j in range(len(xs))]
    cis = [bootstrap_ci(ys[:, j]) for j in range(len(xs))]
    return {"x": xs.tolist(), "iqm": mid, "lo": [c[0] for c in cis], "hi": [c[1] for c in cis]}


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "not reached"
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return "-"
    return f"{x:.3g}{unit}"


def _plot_curves(path: Path, agg: dict, points: dict, frontier: list, axis: str, xlabel: str, title: str,
                 ylabel: str = "normalized score on target") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for arm, a in agg.items():
        c = a[axis]
        if not c["x"]:
            continue
        ax.plot(c["x"], c["iqm"], color=COLORS.get(arm), label=f"{arm} (IQM)", drawstyle="steps-post")
        ax.fill_between(c["x"], c["lo"], c["hi"], color=COLORS.get(arm), alpha=0.15, step="post")
    for arm, p in points.items():
        if p[axis] is not None:
            ax.scatter([p[axis]], [p["iqm"]], color=COLORS.get(arm), marker="x" if "zero" in arm else "^", s=60,
                       label=f"{arm} (IQM)", zorder=5)
            ax.errorbar([p[axis]], [p["iqm"]], yerr=[[p["iqm"] - p["lo"]], [p["hi"] - p["iqm"]]],
                        color=COLORS.get(arm), fmt="none")
    if frontier:
        fx, fy = zip(*frontier)
        ax.plot(fx, fy, "k--", lw=1, drawstyle="steps-post", label="Pareto frontier")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_matrix(path: Path, tasks: list[str], gains: dict, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.full((len(tasks), len(tasks)), np.nan)
    for (s, t), g in gains.items():
        m[tasks.index(s), tasks.index(t)] = g["mean"]
    lim = max(0.05, float(np.nanmax(np.abs(m)))) if np.isfinite(m).any() else 1.0
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(m, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(tasks)), [t.split("/")[-1] for t in tasks], rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), [t.split("/")[-1] for t in tasks])
    ax.set_xlabel("target (fine-tuned on)")
    ax.set_ylabel("source (single-task model)")
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            if np.isfinite(m[i, j]):
                ax.text(j, i, f"{m[i, j]:+.2f}", ha="center", va="center", fontsize=9)
    fig.colorbar(im, ax=ax, label="normalized score gain vs scratch")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(spec: CompareSpec, plan: Plan, out: Path, errors: dict[str, str] | None = None) -> dict:
    """Write report.md, score_vs_flops.png, score_vs_seconds.png, transfer_matrix.png and
    results.json under `out`; returns the results."""
    from frontier.envs.references import reference_returns
    from frontier.envs.registry import get_task

    out = Path(out)
    errors = errors or {}
    T = spec.target
    target_spec = get_task(T)
    refs = reference_returns(target_spec, cache=out / "references.json")
    done = {j.name for j in plan.jobs if job_done(out, j)}
    complete = len(done) == len(plan.jobs)

    records: dict[str, list[dict]] = {}
    for arm in plan.arms:
        if arm.final in done and all(c in done for c in arm.charged):
            records.setdefault(arm.name, []).append(arm_record(out, arm, T, refs))

    agg = {}
    for arm in ARMS:
        recs = records.get(arm, [])
        if recs:
            finals = [r["final_score"] for r in recs]
            agg[arm] = {"seeds": [r["seed"] for r in recs], "final_scores": finals, "final_iqm": iqm(finals),
                        "final_ci": bootstrap_ci(finals),
                        "flops": aggregate_curve(recs, "flops"), "seconds": aggregate_curve(recs, "seconds"),
                        "total_flops_mean": float(np.mean([r["cost"]["learner_flops"] for r in recs])),
                        "total_seconds_mean": float(np.mean([r["cost"]["total_seconds"] for r in recs])),
                        "env_steps_mean": float(np.mean([r["cost"]["env_steps"] for r in recs]))}
            if target_spec.success_key:
                rates = [r["final_success"] for r in recs if r["final_success"] is not None]
                agg[arm]["success"] = {"final_rates": rates, "final_iqm": iqm(rates) if rates else None,
                                       "final_ci": bootstrap_ci(rates) if rates else None,
                                       **{axis: aggregate_curve(recs, axis, "success") for axis in ("flops", "seconds")}}
            # The best the arm's IQM reached mid-run, and how much of it the final evaluation kept.
            curve = agg[arm]["flops"]
            if curve["iqm"]:
                k = int(np.argmax(curve["iqm"]))
                peak = curve["iqm"][k]
                agg[arm].update(peak_iqm=peak, peak_flops=curve["x"][k],
                                final_to_peak=agg[arm]["final_iqm"] / peak if peak > 0 else None)
    points = {}
    for arm in SINGLE_POINT_ARMS:
        recs = records.get(arm, [])
        if recs:
            s = [r["final_score"] for r in recs]
            lo, hi = bootstrap_ci(s)
            points[arm] = {"seeds": [r["seed"] for r in recs], "scores": s, "iqm": iqm(s), "lo": lo, "hi": hi,
                           "flops": float(np.mean([r["cost"]["learner_flops"] for r in recs])),
                           "seconds": float(np.mean([r["cost"]["total_seconds"] for r in recs]))}

    frontiers = {}
    for axis in ("flops", "seconds"):
        pts = [(x, y) for a in agg.values() for x, y in zip(a[axis]["x"], a[axis]["iqm"])]
        pts += [(p[axis], p["iqm"]) for p in points.values()]
        frontiers[axis] = pareto_frontier(pts)

    reach = _reach(spec.levels, agg)
    success_levels = [lv for lv in spec.levels if lv <= 1.0]
    reach_success = (_reach(success_levels, {arm: a["success"] for arm, a in agg.items()})
                     if target_spec.success_key else {})

    # transfer matrix: gain of each (source model -> target) cell over scratch on the target, per seed
    matrix_tasks = [T, *spec.sources] if spec.matrix_flops else []
    per_cell: dict[tuple[str, str], list[float]] = {}
    for cell in plan.cells:
        if cell["job"] in done and cell["scratch"] in done:
            score, base = (json.loads((out / cell[k] / "summary.json").read_text())["tasks"][cell["target"]]["normalized_score"]
                           for k in ("job", "scratch"))
            per_cell.setdefault((cell["source"], cell["target"]), []).append(score - base)
    gains = {k: {"mean": float(np.mean(v)), "per_seed": v, "ci": bootstrap_ci(v, statistic=np.mean)}
             for k, v in per_cell.items()}

    results = {
        "name": spec.name, "target": T, "sources": spec.sources, "related": spec.related,
        "status": "complete" if complete and not errors else "partial",
        "jobs": {"total": len(plan.jobs), "finished": len(done)}, "errors": errors,
        "references": {"random_return": refs[0], "expert_return": refs[1]},
        "budget_flops": spec.budget_flops, "source_flops": spec.source_flops, "pretrain_flops": spec.pretrain_flops,
        "matrix_flops": spec.matrix_flops, "records": records, "aggregate": agg, "points": points,
        "pareto_frontier": {k: v for k, v in frontiers.items()}, "compute_to_reach": reach,
        "compute_to_reach_success": reach_success,
        "transfer_matrix": {f"{s} -> {t}": g for (s, t), g in gains.items()},
    }
    write_json_atomic(out / "results.json", results)
    _plot_curves(out / "score_vs_flops.png", agg, points, frontiers["flops"], "flops", "learner FLOPs (pretraining included)",
                 f"{T}: normalized score vs learner FLOPs")
    _plot_curves(out / "score_vs_seconds.png", agg, points, frontiers["seconds"], "seconds",
                 "CPU/device-seconds (learner + actors + expert data + experts)", f"{T}: normalized score vs total seconds")
    if reach_success:
        _plot_curves(out / "success_vs_flops.png", {arm: a["success"] for arm, a in agg.items()}, {}, [], "flops",
                     "learner FLOPs (pretraining included)", f"{T}: success rate vs learner FLOPs", "success rate on target")
    if gains:
        _plot_matrix(out / "transfer_matrix.png", matrix_tasks, gains,
                     f"gain vs scratch at {spec.matrix_flops:.2g} learner FLOPs")
    (out / "report.md").write_text(_markdown(spec, results, agg, points, reach, gains, matrix_tasks, frontiers))
    return results


def _reach(levels: list[float], curves: dict) -> dict:
    """{level: {arm: FLOPs and seconds at which the arm's IQM curve first reaches the level, and
    their ratios to the specialist's}}; `curves`: {arm: {"flops": curve, "seconds": curve}}."""
    reach = {}
    for lv in levels:
        row = {arm: {axis: compute_to_reach(c[axis]["x"], c[axis]["iqm"], lv) for axis in ("flops", "seconds")}
               for arm, c in curves.items()}
        spec_row = row.get("specialist")
        for r in row.values():
            for axis in ("flops", "seconds"):
                base = spec_row[axis] if spec_row else None
                r[f"{axis}_ratio_to_specialist"] = r[axis] / base if (r[axis] is not None and base) else None
        reach[str(lv)] = row
    return reach


def _reach_table(reach: dict) -> list[str]:
    lines = ["| level | arm | learner FLOPs | ratio to specialist | total seconds | ratio to specialist |",
             "|---|---|---|---|---|---|"]
    for lv, row in reach.items():
        for arm, r in row.items():
            lines.append(f"| {lv} | {arm} | {_fmt(r['flops'])} | {_fmt(r['flops_ratio_to_specialist'])} | "
                         f"{_fmt(r['seconds'], ' s')} | {_fmt(r['seconds_ratio_to_specialist'])} |")
    return lines


# Scores are reported to two decimals; differences below half of that are ties, not wins.
SCORE_TIE = 0.005


def _findings(spec: CompareSpec, agg: dict, points: dict, gains: dict, frontiers: dict) -> list[str]:
    """Plain statements read off the numbers."""
    lines = []
    if not agg:
        return ["No arm has finished yet."]
    ranked = sorted(agg, key=lambda a: -agg[a]["final_iqm"])
    best = ranked[0]
    lines.append("At the budget, final normalized score IQM by arm: " + ", ".join(
        f"{a} {agg[a]['final_iqm']:.2f} [{agg[a]['final_ci'][0]:.2f}, {agg[a]['final_ci'][1]:.2f}]" for a in ranked)
        + f". Highest: **{best}**.")
    if "generalist" in agg and "specialist" in agg:
        g, s = agg["generalist"], agg["specialist"]
        overlap = not (g["final_ci"][0] > s["final_ci"][1] or s["final_ci"][0] > g["final_ci"][1])
        diff = g["final_iqm"] - s["final_iqm"]
        verdict = "beats" if diff >= SCORE_TIE else "loses to" if diff <= -SCORE_TIE else "ties"
        lines.append(f"The generalist {verdict} the specialist at equal learner FLOPs ({g['final_iqm']:.2f} vs "
                     f"{s['final_iqm']:.2f})" + ("; the 95% CIs overlap, so with these seeds the difference is not "
                                                 "resolved." if overlap else "; the 95% CIs do not overlap."))
    kept = [a for a in agg if agg[a].get("final_to_peak") is not None]
    if kept:
        lines.append("Final IQM over the run's peak IQM (1 = the online phase kept the best it reached): " + ", ".join(
            f"{a} {agg[a]['final_to_peak']:.2f} (peak {agg[a]['peak_iqm']:.2f} at {agg[a]['peak_flops']:.2g} FLOPs)"
            for a in kept) + ".")
    losers = [a for a in agg if "generalist" in agg and agg[a]["final_iqm"] - agg["generalist"]["final_iqm"] >= SCORE_TIE]
    if losers:
        lines.append("Where the generalist loses: at the budget, " + ", ".join(losers) + " end higher than it.")
    for axis, label in (("flops", "learner FLOPs"), ("seconds", "total seconds")):
        owners = []
        for x, y in frontiers[axis]:  # frontier points are copies of curve points: exact matches
            owners += [a for a, v in agg.items() if (x, y) in zip(v[axis]["x"], v[axis]["iqm"])]
            owners += [a for a, p in points.items() if (p[axis], p["iqm"]) == (x, y)]
        if owners:
            lines.append(f"Pareto frontier against {label} is made of points of: " + ", ".join(dict.fromkeys(owners)) + ".")
    if "generalist-zeroshot" in points:
        p = points["generalist-zeroshot"]
        lines.append(f"Generalist zero-shot on {spec.target}: {p['iqm']:.2f} (IQM; 0 is the random policy). T's adapter "
                     "and head are untrained (random init), so this is the pretrained trunk seen through random "
                     "input and output maps: whatever it scores, it is not knowledge of T.")
    if "generalist-fewshot" in points:
        p = points["generalist-fewshot"]
        lines.append(f"Generalist few-shot ({spec.few_shot.episodes} demonstrations, {spec.few_shot.updates} updates of "
                     f"T's adapter/head/task embedding, trunk frozen): {p['iqm']:.2f} (IQM).")
    if gains:
        neg = sorted((g["mean"], s, t) for (s, t), g in gains.items() if g["mean"] <= -TIE)
        pos = sorted(((g["mean"], s, t) for (s, t), g in gains.items() if g["mean"] >= TIE), reverse=True)
        lines.append(f"Transfer matrix: {len(pos)} of {len(gains)} pairs gain over scratch at equal FLOPs, {len(neg)} lose, "
                     f"{len(gains) - len(pos) - len(neg)} are within {TIE} of it."
                     + (f" Largest gain {pos[0][1]} -> {pos[0][2]} ({pos[0][0]:+.2f})." if pos else "")
                     + (f" Largest loss {neg[0][1]} -> {neg[0][2]} ({neg[0][0]:+.2f})." if neg else ""))
    return lines


def _markdown(spec, results, agg, points, reach, gains, matrix_tasks, frontiers) -> str:
    T = spec.target
    md = [f"# frontier compare: {spec.name}", ""]
    if results["status"] != "complete":
        md += [f"**PARTIAL REPORT**: {results['jobs']['finished']} of {results['jobs']['total']} jobs finished"
               + (f"; {len(results['errors'])} failed" if results["errors"] else "") + ". Numbers cover finished runs only.", ""]
    md += [f"Target **{T}**; sources {', '.join(spec.sources)}; related {', '.join(spec.related)}; "
           f"closest-source measure `{spec.closest.measure}`"
           + (f" (order {', '.join(spec.closest.order)})" if spec.closest.order else "") + f"; seeds {spec.seeds}.", "",
           f"Budget per arm: {spec.budget_flops:.3g} learner FLOPs, pretraining included (source model "
           f"{spec.source_flops:.3g}, multi-task pretraining {spec.pretrain_flops:.3g}). Target demonstrations: "
           f"{spec.target_episodes}; source expert episodes: {spec.expert_episodes}. Normalized score = (return - "
           f"{results['references']['random_return']:.1f}) / ({results['references']['expert_return']:.1f} - "
           f"{results['references']['random_return']:.1f}). IQM and 95% percentile-bootstrap CIs across seeds.", "",
           "## Findings", ""]
    md += [f"- {line}" for line in _findings(spec, agg, points, gains, frontiers)]
    md += ["", "## Score at the budget", "",
           "| arm | seeds | final score per seed | IQM [95% CI] | peak IQM (FLOPs) | final/peak | learner FLOPs | "
           "total CPU/device-s | env steps |",
           "|---|---|---|---|---|---|---|---|---|"]
    for arm, a in agg.items():
        peak = f"{a['peak_iqm']:.2f} ({a['peak_flops']:.2g})" if "peak_iqm" in a else ""
        ratio = f"{a['final_to_peak']:.2f}" if a.get("final_to_peak") is not None else "-"
        md.append(f"| {arm} | {len(a['seeds'])} | {', '.join(f'{s:.2f}' for s in a['final_scores'])} | "
                  f"{a['final_iqm']:.2f} [{a['final_ci'][0]:.2f}, {a['final_ci'][1]:.2f}] | {peak} | "
                  f"{ratio} | {a['total_flops_mean']:.3g} | "
                  f"{a['total_seconds_mean']:.0f} | {a['env_steps_mean']:.0f} |")
    for arm, p in points.items():
        md.append(f"| {arm} | {len(p['seeds'])} | {', '.join(f'{s:.2f}' for s in p['scores'])} | {p['iqm']:.2f} "
                  f"[{p['lo']:.2f}, {p['hi']:.2f}] | | | {p['flops']:.3g} | {p['seconds']:.0f} | |")
    md += ["", "Cost breakdown (means over seeds):", "",
           "| arm | learner FLOPs | of which before T | learner device-s | actor CPU-s | expert data CPU-s | "
           "expert training CPU-s | env steps by source |", "|---|---|---|---|---|---|---|---|"]
    for arm, recs in results["records"].items():
        c = [r["cost"] for r in recs]
        steps: dict[str, float] = {}
        for x in c:
            for k, v in x["env_steps_by_source"].items():
                if v and not k.startswith("dataset:"):  # reading a stored dataset steps no env
                    steps[k] = steps.get(k, 0) + v / len(c)
        mean = lambda key: float(np.mean([x[key] for x in c]))  # noqa: E731
        md.append(f"| {arm} | {mean('learner_flops'):.3g} | {np.mean([r['pretraining_flops'] for r in recs]):.3g} | "
                  f"{mean('learner_device_s'):.0f} | {mean('actor_cpu_s'):.0f} | {mean('data_cpu_s'):.1f} | "
                  f"{mean('expert_cpu_s'):.0f} | {', '.join(f'{k} {v:.0f}' for k, v in sorted(steps.items()))} |")
    md += ["", "Costs are means over seeds. Total CPU/device-seconds = learner device-seconds + actor CPU-seconds "
           "(exploration and evaluation) of every run the arm used + the CPU-seconds of collecting the expert data it "
           "read (pro rata) + the training cost of `rl` experts (zoo cards; scripted controllers cost 0). "
           "`generalist-zeroshot`: the generalist's pretrained model evaluated on T with T's adapter and head at their "
           "random initialization (observation normalization from T's demonstrations), before any update on T. "
           "`generalist-fewshot`: T's adapter, head and task embedding trained on the few demonstrations with the "
           "transformer frozen (not a demonstration-prompted context).", "",
           "![score vs FLOPs](score_vs_flops.png)", "", "![score vs seconds](score_vs_seconds.png)", "",
           "## Compute to reach a score", "",
           "First evaluation at which the IQM curve reaches the level (evaluations are discrete; no interpolation).", ""]
    md += _reach_table(reach)
    if results["compute_to_reach_success"]:
        md += ["", "## Success rate", "",
               f"{T} defines success (its condition met at any step of an episode). Final success rate per arm:", "",
               "| arm | seeds | final success rate per seed | IQM [95% CI] |", "|---|---|---|---|"]
        for arm, a in agg.items():
            s = a["success"]
            if s["final_rates"]:
                md.append(f"| {arm} | {len(s['final_rates'])} | {', '.join(f'{x:.2f}' for x in s['final_rates'])} | "
                          f"{s['final_iqm']:.2f} [{s['final_ci'][0]:.2f}, {s['final_ci'][1]:.2f}] |")
        md += ["", "Compute to reach a success rate (IQM curve across seeds, first evaluation at the level):", ""]
        md += _reach_table(results["compute_to_reach_success"])
        md += ["", "![success vs FLOPs](success_vs_flops.png)"]
    if gains:
        md += ["", "## Transfer matrix", "",
               f"Each cell: the source task's single-task model ({spec.source_flops:.3g} FLOPs, charged) fine-tuned on the "
               f"target up to {spec.matrix_flops:.3g} learner FLOPs in total, minus scratch on the target at the same "
               f"FLOPs; mean over seeds of the final normalized score difference "
               f"({len(spec.seeds)} seeds where finished).", "",
               "| source \\ target | " + " | ".join(t.split("/")[-1] for t in matrix_tasks) + " |",
               "|---|" + "---|" * len(matrix_tasks)]
        for s in matrix_tasks:
            cells = []
            for t in matrix_tasks:
                g = gains.get((s, t))
                cells.append("" if g is None else f"{g['mean']:+.2f}")
            md.append(f"| {s.split('/')[-1]} | " + " | ".join(cells) + " |")
        md += ["", "![transfer matrix](transfer_matrix.png)"]
    if results["errors"]:
        md += ["", "## Failed jobs", ""] + [f"- `{k}`: {v}" for k, v in results["errors"].items()]
    md += ["", "Every run is a run directory under this directory's seed*/ folders (TensorBoard in tb/, "
           "summary.json, evals.jsonl); results.json holds every number above.", ""]
    return "\n".join(md)
