"""Hand-engineered (non-RL) controllers, one per built-in task that has one.

Each controller is called as `controller(obs, env) -> action` with actions in the wrapped
env's units ([-1, 1] for continuous tasks). MuJoCo balancers use LQR gains computed from
the task's own MuJoCo model (finite-difference linearization, discrete Riccati equation)
on first use; the Atari bots read the console RAM.
"""
from __future__ import annotations

import math
from functools import partial

import gymnasium as gym
import numpy as np

from frontier.envs.experts.base import PolicyExpert
from frontier.envs.spec import TaskSpec


class CartPoleController:
    """Linear state feedback on (x, x_dot, theta, theta_dot), bang-bang through the two actions."""

    # Pole angle dominates; the cart terms stop the slow drift off the track in 500 steps.
    gains = np.array([0.1, 0.5, 10.0, 2.0])

    def __call__(self, obs, env) -> int:
        return int(float(self.gains @ obs) > 0.0)


class PendulumController:
    """Energy pumping swing-up, then PD balance near the top (Pendulum-v1).

    Dynamics (g=10, m=l=1): theta_ddot = 15 sin(theta) + 3 u, theta = 0 upright, so
    E = theta_dot^2 / 2 + 15 cos(theta) is 15 upright and dE/dt = 3 u theta_dot.
    """

    max_torque = 2.0
    e_top = 15.0
    energy_gain = 0.2  # full torque when 5 energy units short of the top

    def __call__(self, obs, env) -> np.ndarray:
        cos, sin, theta_dot = (float(v) for v in obs)
        theta = math.atan2(sin, cos)
        if cos > 0.85:
            u = -(12.0 * theta + 2.5 * theta_dot)
        else:
            energy = 0.5 * theta_dot**2 + 15.0 * cos
            # Push along the velocity in proportion to the energy still missing (Astrom-Furuta):
            # full torque far from the top, a smooth approach near it (no bang-bang chatter,
            # which a policy imitating it could not tell apart from noise). Kick if at rest.
            direction = theta_dot if abs(theta_dot) > 1e-3 else 1.0
            gain = np.clip(self.energy_gain * (self.e_top - energy), -1.0, 1.0)
            u = self.max_torque * math.copysign(1.0, direction) * gain
        return np.array([np.clip(u / self.max_torque, -1.0, 1.0)], dtype=np.float32)


class AcrobotController:
    """Energy pumping for Acrobot-v1: full torque along the elbow's angular velocity.

    Obs: cos/sin of both joint angles, then theta1_dot, theta2_dot. Pushing the elbow the way
    it already turns feeds energy into the swing until the tip clears the bar.
    """

    def __call__(self, obs, env) -> int:
        return 2 if obs[5] > 0 else 0  # actions 0, 1, 2 are torques -1, 0, +1


def mujoco_lqr(env: gym.Env, q_diag, r: float) -> np.ndarray:
    """LQR gains K (nu, 2 nv) for the env's MuJoCo model linearized at qpos0, qvel = 0.

    The model is linearized over one physics step, composed over the env's frame_skip
    (the action is held that long), and the discrete Riccati equation solved for that
    step. Control law: ctrl = -K @ [qpos - qpos0, qvel].
    """
    import mujoco
    from scipy.linalg import solve_discrete_are

    base = env.unwrapped
    model = base.model
    data = mujoco.MjData(model)
    nv, nu = model.nv, model.nu
    x0 = np.concatenate([model.qpos0, np.zeros(nv)])

    def step(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        # Hinge and slide joints only, so qpos and qvel share the tangent space.
        mujoco.mj_resetData(model, data)
        data.qpos[:] = x[:nv]
        data.qvel[:] = x[nv:]
        data.ctrl[:] = u
        mujoco.mj_step(model, data)
        return np.concatenate([data.qpos, data.qvel])

    # Central differences over one physics step (mjd_transitionFD does not support RK4).
    eps = 1e-6
    A = np.zeros((2 * nv, 2 * nv))
    B = np.zeros((2 * nv, nu))
    u0 = np.zeros(nu)
    for i in range(2 * nv):
        dx = np.zeros(2 * nv)
        dx[i] = eps
        A[:, i] = (step(x0 + dx, u0) - step(x0 - dx, u0)) / (2 * eps)
    for i in range(nu):
        du = np.zeros(nu)
        du[i] = eps
        B[:, i] = (step(x0, u0 + du) - step(x0, u0 - du)) / (2 * eps)
    Ad = np.eye(2 * nv)
    Bd = np.zeros_like(B)
    for _ in range(base.frame_skip):
        Bd = A @ Bd + B
        Ad = A @ Ad
    Q = np.diag(np.asarray(q_diag, dtype=np.float64))
    R = r * np.eye(nu)
    P = solve_discrete_are(Ad, Bd, Q, R)
    return np.linalg.solve(R + Bd.T @ P @ Bd, Bd.T @ P @ Ad)


class LQRBalancer:
    """LQR balance for a MuJoCo cart-pole family task, computed on first use.

    `state(obs)` maps the observation to [qpos, qvel]; the resulting control is divided by
    the actuator's ctrl range so the action is in [-1, 1].
    """

    def __init__(self, q_diag, r: float, state):
        self.q_diag = q_diag
        self.r = r
        self.state = state
        self.K: np.ndarray | None = None  # (nu, 2 nv), from the env's model on first call
        self.ctrl_high: np.ndarray | None = None  # (nu,) actuator ctrl range upper bounds

    def __call__(self, obs, env) -> np.ndarray:
        if self.K is None:
            self.K = mujoco_lqr(env, self.q_diag, self.r)
            self.ctrl_high = env.unwrapped.model.actuator_ctrlrange[:, 1].copy()
        ctrl = -self.K @ self.state(np.asarray(obs, dtype=np.float64))
        return np.clip(ctrl / self.ctrl_high, -1.0, 1.0).astype(np.float32)


def inverted_pendulum_state(obs: np.ndarray) -> np.ndarray:
    """InvertedPendulum-v5 observes [qpos (cart, hinge), qvel] directly."""
    return obs


def inverted_double_pendulum_state(obs: np.ndarray) -> np.ndarray:
    """InvertedDoublePendulum-v5 obs: x, sin(2 angles), cos(2 angles), qvel (3, clipped at 10)."""
    angles = np.arctan2(obs[1:3], obs[3:5])
    return np.concatenate([obs[:1], angles, obs[5:8]])


def inverted_pendulum_controller() -> LQRBalancer:
    return LQRBalancer(q_diag=[1.0, 10.0, 0.1, 0.1], r=0.1, state=inverted_pendulum_state)


def inverted_double_pendulum_controller() -> LQRBalancer:
    return LQRBalancer(q_diag=[1.0, 50.0, 50.0, 0.1, 1.0, 1.0], r=1.0, state=inverted_double_pendulum_state)


class ReacherController:
    """Inverse kinematics to the target, then PD on the joint angles (Reacher-v5).

    Obs: cos(q) (2), sin(q) (2), target xy (2), q_dot (2), fingertip - target xy (2).
    Links: 0.1 (shoulder to elbow) and 0.11 (elbow to fingertip). Of the two elbow solutions
    the one nearer the current elbow angle is used. Gains trade reach time against the
    squared-action cost.
    """

    l1 = 0.1
    l2 = 0.11

    def __init__(self, kp: float = 0.3, kd: float = 0.05):
        self.kp = kp
        self.kd = kd

    def __call__(self, obs, env) -> np.ndarray:
        q = np.arctan2(obs[2:4], obs[0:2])
        tx, ty = float(obs[4]), float(obs[5])
        c2 = np.clip((tx * tx + ty * ty - self.l1**2 - self.l2**2) / (2 * self.l1 * self.l2), -1.0, 1.0)
        best = None
        for q2 in (math.acos(c2), -math.acos(c2)):
            q1 = math.atan2(ty, tx) - math.atan2(self.l2 * math.sin(q2), self.l1 + self.l2 * math.cos(q2))
            err = np.array([q1, q2]) - q
            err = (err + np.pi) % (2 * np.pi) - np.pi  # shortest way round
            if best is None or abs(err[1]) < abs(best[1]):
                best = err
        torque = self.kp * best - self.kd * np.asarray(obs[6:8])
        return np.clip(torque, -1.0, 1.0).astype(np.float32)


class PongBot:
    """Meets the ball where it will cross the paddle's line, reading the RAM (ALE Pong).

    RAM (verified by stepping the emulator): 51 player paddle y (38 top .. 203 bottom),
    49 ball x (52 .. 205; the player returns it at x ~188), 54 ball y (44 .. 207 between the
    walls; 0 while no ball is in play). Actions: 1 FIRE serves, 2 RIGHT moves the paddle
    up, 3 LEFT moves it down. Ball velocity comes from the previous step's RAM; the predicted
    crossing height folds the straight line back between the walls. Offsets tuned on a few
    games (seeds 0..3 and 100..103), not on the reference seeds.
    """

    top, bottom, hit_x = 44, 207, 188
    offset = 4  # paddle RAM y + offset is the point aimed at the ball
    deadband = 3

    def __init__(self):
        self.prev: tuple[int, int] | None = None

    def reset(self) -> None:
        self.prev = None

    def __call__(self, obs, env) -> int:
        ram = env.unwrapped.ale.getRAM()
        x, y, paddle = int(ram[49]), int(ram[54]), int(ram[51])
        prev, self.prev = self.prev, (x, y)
        if y == 0:
            return 1
        target = float(y)
        if prev is not None and prev[1] != 0 and x > prev[0]:
            dx, dy = x - prev[0], y - prev[1]
            span = self.bottom - self.top
            fold = (y + dy * (self.hit_x - x) / dx - self.top) % (2 * span)
            target = self.top + (fold if fold <= span else 2 * span - fold)
        error = target - (paddle + self.offset)
        if error > self.deadband:
            return 3
        if error < -self.deadband:
            return 2
        return 0


class BreakoutBot:
    """Keeps the paddle under the ball, reading the RAM (ALE Breakout).

    RAM (verified by stepping the emulator): 72 paddle x (55 left .. 191 right), 99 ball x
    (55 .. 199), 101 ball y (0 while no ball is in play, e.g. after a lost life). Actions:
    1 FIRE launches a ball, 2 RIGHT, 3 LEFT. Offset tuned on a few games (seeds 0..2 and
    100..103), not on the reference seeds; predicting the landing point did not beat tracking.
    """

    offset = 10  # paddle RAM x + offset is roughly the paddle's middle
    deadband = 2

    def __call__(self, obs, env) -> int:
        ram = env.unwrapped.ale.getRAM()
        ball_x, ball_y = int(ram[99]), int(ram[101])
        if ball_y == 0:
            return 1
        error = ball_x - (int(ram[72]) + self.offset)
        if error > self.deadband:
            return 2
        if error < -self.deadband:
            return 3
        return 0


def make_scripted(controller_factory, policy_id: str, noise: float, spec: TaskSpec) -> PolicyExpert:
    """A scripted expert source: a fresh controller, named `policy_id`."""
    return PolicyExpert(spec, controller_factory(), kind="scripted", policy_id=policy_id, noise=noise)


def scripted(controller_factory, policy_id: str, noise: float = 0.0):
    """Expert factory `spec -> PolicyExpert` for TaskSpec.experts (picklable).

    `noise` > 0 collects DART data (see ExpertSource._attempts): used for the LQR balancers, whose
    clean episodes never leave the upright state, and for the Pendulum swing-up, whose
    clean episodes cover the balance region too thinly: imitation would never see a correction.
    """
    return partial(make_scripted, controller_factory, policy_id, noise)


FACTORIES = {
    "CartPole": scripted(CartPoleController, "cartpole-linear-v1"),
    "Pendulum": scripted(PendulumController, "pendulum-energy-pd-v1", noise=0.5),
    "Acrobot": scripted(AcrobotController, "acrobot-energy-pump-v1"),
    "InvertedPendulum": scripted(inverted_pendulum_controller, "inverted-pendulum-lqr-v1", noise=0.3),
    "InvertedDoublePendulum": scripted(inverted_double_pendulum_controller, "inverted-double-pendulum-lqr-v1", noise=0.1),
    "Reacher": scripted(ReacherController, "reacher-ik-pd-v1"),
    "Pong": scripted(PongBot, "pong-ram-intercept-v1"),
    "Breakout": scripted(BreakoutBot, "breakout-ram-tracker-v1"),
}
