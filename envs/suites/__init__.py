"""Built-in task suites: classic control, MuJoCo v5, Atari (ALE)."""
