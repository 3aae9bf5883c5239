"""Atari (ALE v5) tasks: RAM-observation and pixel versions of Pong and Breakout.

ALE v5 defaults are kept (sticky actions 0.25, minimal action set). Episodes are capped at
`ATARI_MAX_STEPS` agent steps (4 emulator frames each) so that one episode costs well under
a second of CPU and a quick run sees many episodes; reference returns are measured under the
same cap, so normalized scores stay meaningful.
"""
from __future__ import annotations

import ale_py
import gymnasium as gym
import numpy as np

from frontier.agents.spaces import Box, Discrete
from frontier.envs.experts import scripted
from frontier.envs.experts.base import filtered
from frontier.envs.spec import TaskSpec

# At import, not in tasks(): a process that unpickles a spec's preprocess function imports
# this module and can then make the ALE envs without running discovery.
gym.register_envs(ale_py)

# 2000 agent steps = 8000 frames (~2.2 minutes of play, ~0.5 s of CPU on the RAM tasks). Random
# play ends well inside it (Pong: a lost game in ~950 steps; Breakout: ~200 steps), the scripted
# Breakout bot mostly finishes its 5 lives inside it (~950 steps), and in Pong a game between
# evenly matched players is cut off there, so Pong returns are the score after 2000 steps.
ATARI_MAX_STEPS = 2000


class AutoServe(gym.Wrapper):
    """Breakout waits for FIRE before every ball; this wrapper serves for the agent.

    After a reset and after each lost life it presses FIRE until the ball is in play (RAM
    byte 101, the ball's y, is 0 while no ball is out; at most `max_presses`, since sticky
    actions can swallow a press). The DQN-era Atari wrappers did the same at reset
    (FireReset): a serve is a few frames in thousands, too rare to imitate, and without it a
    policy that never learned to press FIRE scores nothing. Rewards of the serve steps are
    added to the step that triggered them.
    """

    BALL_Y = 101
    FIRE = 1
    max_presses = 4

    def _serve(self, obs, reward, terminated, truncated, info):
        for _ in range(self.max_presses):
            if terminated or truncated or self.env.unwrapped.ale.getRAM()[self.BALL_Y] != 0:
                break
            obs, r, terminated, truncated, info = self.env.step(self.FIRE)
            reward += float(r)
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        obs, _, _, _, info = self._serve(obs, 0.0, False, False, info)
        self._lives = self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        if lives < self._lives:
            obs, reward, terminated, truncated, info = self._serve(obs, float(reward), terminated, truncated, info)
        self._lives = lives
        return obs, reward, terminated, truncated, info


def breakout_ram(env: gym.Env) -> gym.Env:
    return ram_to_float(AutoServe(env))


def ram_to_float(env: gym.Env) -> gym.Env:
    """uint8 RAM (128,) -> float32 in [0, 1]."""
    space = gym.spaces.Box(0.0, 1.0, env.observation_space.shape, np.float32)
    return gym.wrappers.TransformObservation(env, lambda o: o.astype(np.float32) / 255.0, space)


def pixels_84x84x4(env: gym.Env, serve: bool = False) -> gym.Env:
    """84x84 gray frames (frame skip 4, max-pooled), stacked 4 deep, as uint8 (H, W, C)."""
    env = gym.wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84, grayscale_obs=True, noop_max=30)
    if serve:
        env = AutoServe(env)
    env = gym.wrappers.FrameStackObservation(env, 4)  # (4, 84, 84)
    space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    return gym.wrappers.TransformObservation(env, lambda o: np.ascontiguousarray(np.moveaxis(np.asarray(o), 0, -1)), space)


def breakout_pixels(env: gym.Env) -> gym.Env:
    return pixels_84x84x4(env, serve=True)


def tasks() -> list[TaskSpec]:
    # random_return / expert_return measured with `python -m frontier.envs.measure_references`
    # (20 episodes, seeds 1000..1019) under the ATARI_MAX_STEPS cap; the pixel tasks differ
    # from the RAM ones by AtariPreprocessing's up-to-30 no-op starts and frame max-pooling.
    refs = {
        "Pong": dict(reward_scale=0.1, eval_target=21.0, explore_target=21.0),  # 21: a won game
        "Breakout": dict(reward_scale=0.1, eval_target=40.0, explore_target=80.0),
    }
    measured = {
        "ALE/Pong-ram-v5": (-20.1, -2.6),
        "ALE/Pong-v5": (-20.2, -3.8),
        "ALE/Breakout-ram-v5": (1.4, 39.6),
        "ALE/Breakout-v5": (1.3, 32.9),
    }
    actions = {"Pong": 6, "Breakout": 4}  # ALE v5's minimal action sets
    preprocess = {"Pong": (ram_to_float, pixels_84x84x4), "Breakout": (breakout_ram, breakout_pixels)}
    out = []
    for game, ref in refs.items():
        experts = {"scripted": scripted.FACTORIES[game], "filtered": filtered}
        ram, pixels = f"ALE/{game}-ram-v5", f"ALE/{game}-v5"
        out.append(
            TaskSpec(
                name=ram,
                env=pixels,
                suite="atari",
                max_episode_steps=ATARI_MAX_STEPS,
                env_kwargs={"obs_type": "ram"},  # ale-py 0.12 has no separate -ram ids
                preprocess=preprocess[game][0],
                experts=dict(experts),
                random_return=measured[ram][0],
                expert_return=measured[ram][1],
                spaces=(Box((128,)), Discrete(actions[game])),
                **ref,
            )
        )
        out.append(
            TaskSpec(
                name=pixels,
                env=pixels,
                suite="atari",
                max_episode_steps=ATARI_MAX_STEPS,
                env_kwargs={"frameskip": 1},  # AtariPreprocessing skips frames itself
                preprocess=preprocess[game][1],
                experts=dict(experts),
                random_return=measured[pixels][0],
                expert_return=measured[pixels][1],
                spaces=(Box((84, 84, 4), "uint8"), Discrete(actions[game])),
                **ref,
            )
        )
    return out
