"""The Online Decision Transformer objective, for batches that mix tasks.

Per task i present in the batch, over its real (unmasked) steps:

    policy:      NLL_i - alpha_i.detach() * H_i          (max-likelihood plus an entropy bonus;
                                                          for continuous actions optionally both
                                                          beta-weighted per dimension)
    temperature: alpha_i * (H_i - target_i).detach()     (alpha grows when H falls below target)

with alpha_i = exp(log_temperature[i]). Both sum over the real steps of every task and
divide by the batch's count of real steps, so each real step weighs the same whatever
its task.
"""
from __future__ import annotations

import torch

from frontier.agents.model import DecisionTransformer


def odt_loss(
    model: DecisionTransformer, tensors: dict, nll_beta: float = 0.0, hidden: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Returns (policy loss, temperature loss, metrics).

    `hidden` (B, K, C) is the model's output on `tensors` when the caller already has it.

    `nll_beta` weighs the continuous-action NLL as beta-NLL, and the entropy bonus alike (see
    SquashedGaussian.weigh); 0 is ODT's plain objective. The reported nll and entropy
    metrics, and the temperature loss, always use the plain NLL and entropy.

    `tensors` is what `batch_to_tensors` returns. The policy loss has no gradient into
    log_temperature and the temperature loss has gradient ONLY into it, so the caller may
    backpropagate their sum once.
    """
    if hidden is None:
        hidden = model(
            tensors["task"], tensors["observations"], tensors["actions"], tensors["returns_to_go"], tensors["timesteps"],
            rows=tensors.get("rows"),
        )  # (B, K, C)
    mask = tensors["mask"].float()  # (B, K)
    n_total = mask.sum().clamp_min(1.0)
    log_temperature = model.log_temperature
    policy_loss = hidden.new_zeros((), dtype=torch.float32)
    temperature_loss = hidden.new_zeros((), dtype=torch.float32)
    nll_sum_all = hidden.new_zeros((), dtype=torch.float32)
    names, per_task = [], []
    rows = tensors.get("rows")
    for i in sorted(tensors["observations"]):
        idx = rows[i] if rows is not None else torch.nonzero(tensors["task"] == i).squeeze(1)  # (B_i,)
        h = hidden.index_select(0, idx)  # (B_i, K, C)
        m = mask.index_select(0, idx).reshape(-1)  # (B_i*K,)
        a = tensors["actions"][i]
        a = a.reshape(-1, a.shape[-1]) if a.dim() == 3 else a.reshape(-1)  # (B_i*K, A) or (B_i*K,)
        dist = model.action_distribution(i, h.reshape(-1, h.shape[-1]))
        if nll_beta and model.tasks[i].continuous:
            # The bonus gets the fit's weights too: against an unweighted bonus, the variance-
            # weighted fit balances at std^2 = squared error + alpha, so refitting the policy's
            # own samples online widens it by alpha every round.
            log_p, ent = dist.log_prob_terms(a), dist.entropy_terms()  # (B_i*K, A) each
            nll, entropy = -log_p.sum(-1), ent.sum(-1)  # (B_i*K,)
            fit, bonus = -dist.weigh(log_p, nll_beta), dist.weigh(ent, nll_beta)  # (B_i*K,)
        else:
            # The squashed Gaussian clamps targets away from +-1 itself.
            nll, entropy = -dist.log_prob(a), dist.entropy()  # (B_i*K,)
            fit, bonus = nll, entropy
        n = m.sum().clamp_min(1.0)
        nll_sum = (nll * m).sum()
        entropy_mean = (entropy * m).sum() / n
        alpha = log_temperature[i].exp()
        policy_loss = policy_loss + ((fit - alpha.detach() * bonus) * m).sum()
        target = model.tasks[i].entropy_target
        temperature_loss = temperature_loss + n * alpha * (entropy_mean - target).detach()
        nll_sum_all = nll_sum_all + nll_sum
        names.append(model.tasks[i].name)
        per_task.append(torch.stack([entropy_mean.detach(), alpha.detach(), (nll_sum / n).detach()]))
    policy_loss = policy_loss / n_total
    temperature_loss = temperature_loss / n_total
    # One device-to-host transfer for all metrics.
    values = torch.cat(
        [torch.stack([policy_loss.detach(), (nll_sum_all / n_total).detach(), temperature_loss.detach()]), *per_task]
    ).tolist()
    metrics = {"loss/total": values[0], "loss/nll": values[1], "loss/temperature": values[2]}
    for k, name in enumerate(names):
        entropy_v, alpha_v, nll_v = values[3 + 3 * k : 6 + 3 * k]
        metrics[f"entropy/{name}"] = entropy_v
        metrics[f"temperature/{name}"] = alpha_v
        metrics[f"nll/{name}"] = nll_v
    return policy_loss, temperature_loss, metrics


def action_metrics(model: DecisionTransformer, tensors: dict, hidden: torch.Tensor) -> dict[str, dict[str, float]]:
    """How well the model predicts the batch's actions, per task present: {task name: {"nll": mean
    -log p(a_t) per real step (plain, as loss/nll), "action_error": the deterministic action's
    error (continuous: root mean square over steps and dimensions of mode - a_t in [-1, 1] units;
    discrete: the share of steps where the most likely action is not a_t)}}.

    `hidden` (B, K, C) is the model's output on `tensors`. Draws no random numbers, so measuring
    never changes a run's streams.
    """
    mask = tensors["mask"]
    out = {}
    for i in sorted(tensors["observations"]):
        idx = tensors["rows"][i]  # (B_i,)
        m = mask.index_select(0, idx).reshape(-1) > 0  # (B_i*K,)
        a = tensors["actions"][i]
        a = (a.reshape(-1, a.shape[-1]) if a.dim() == 3 else a.reshape(-1))[m]  # (N, A) or (N,)
        h = hidden.index_select(0, idx).reshape(-1, hidden.shape[-1])[m]  # (N, C)
        dist = model.action_distribution(i, h)
        mode = dist.mode()
        if model.tasks[i].continuous:
            error = (mode - a.float()).pow(2).mean().sqrt()
        else:
            error = (mode != a).float().mean()
        out[model.tasks[i].name] = {"nll": float(-dist.log_prob(a).mean()), "action_error": float(error)}
    return out


def return_expectile_loss(model: DecisionTransformer, tensors: dict, expectile: float) -> tuple[torch.Tensor, float]:
    """Expectile regression of the return head on the episodes' returns from their first step:
    mean over the batch's steps at timestep 0 of |expectile - 1(R < R_hat)| ((R - R_hat) / std)^2,
    std the task's return scale (DecisionTransformer.set_return_stats). An expectile near 1 makes
    the prediction the best return the data reached from a start like this one, rather than the
    mean. Only first steps: a later step's return-to-go also depends on how much of the episode
    is left, which the observation does not show (a balanced CartPole looks the same at step 0
    and at step 450). Returns (loss, its value); zero without a first step in the batch. Gradient
    only into the return heads."""
    first = (tensors["mask"] > 0) & (tensors["timesteps"] == 0)  # (B, K)
    total = tensors["returns_to_go"].new_zeros(())
    for i in sorted(tensors["observations"]):
        idx = tensors["rows"][i]  # (B_i,)
        m = first.index_select(0, idx)  # (B_i, K)
        u = (tensors["returns_to_go"].index_select(0, idx).float()
             - model.predict_return(i, tensors["observations"][i])) / model.return_std[i]  # (B_i, K)
        weight = torch.where(u < 0, 1.0 - expectile, expectile)  # (B_i, K)
        total = total + (weight * u.pow(2))[m].sum()
    loss = total / first.sum().clamp_min(1)
    return loss, float(loss.detach())
