"""The agent: spaces, the multi-task Decision Transformer, its loss, learner and policy.

Imports torch and numpy only; never ray or gymnasium.
"""
