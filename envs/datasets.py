"""Expert datasets on disk, the "dataset" expert source, and Minari import/export.

A dataset is a directory:

    dataset.json          what it is and what it cost (written LAST: a directory without
                          it is incomplete and rejected)
    episodes-00000.npz    episodes in the agents.storage format (per-episode provenance
    episodes-00001.npz    is each Episode.source), up to `episodes_per_file` per file
    ...

dataset.json holds: format_version, frontier_version, name, task, source {"kind",
"policies"}, episodes, steps (timesteps stored), returns {"mean", "std", "min", "p10",
"median", "p90", "max"} (their spread: see `return_spread`), cost
{"env_steps", "cpu_s", "gpu_s"} (everything spent producing it, discarded attempts
included), created (UTC ISO time), files [{"name", "episodes", "sha256"}], and any extra
keys the writer adds (e.g. "derived_from", "minari").

    with DatasetWriter("data/cartpole", "CartPole-v1", "scripted") as w:
        for ep in expert.episodes(100, seed=0):
            w.add(ep)
        w.finish({"env_steps": expert.env_steps, "cpu_s": 3.2, "gpu_s": 0.0})
    expert = DatasetExpert(get_task("CartPole-v1"), "data/cartpole")
    make_expert(spec, "dataset:data/cartpole")          # the same, from a config string

Minari (the Farama offline-RL format) is used with local files only: `export_minari`
writes a Minari dataset under a root directory of the caller's choosing, `import_minari`
reads one from such a root (or a dataset directory path) into this format. Nothing is
ever downloaded.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from frontier.agents.storage import read_episodes, sha256_file, write_episodes
from frontier.agents.trajectory import Episode
from frontier.envs.experts.base import ExpertSource
from frontier.envs.records import read_json_object
from frontier.envs.spec import TaskSpec

FORMAT_VERSION = 1
META_FILE = "dataset.json"
# Keys of the per-episode Minari metadata and dataset metadata this module writes.
MINARI_SOURCE_KEY = "frontier_source"  # JSON of Episode.source
MINARI_DATASET_KEY = "frontier_dataset"  # JSON of our dataset.json
COST_KEYS = ("env_steps", "cpu_s", "gpu_s")


def frontier_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("frontier-rl")
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown"


# -- writing -----------------------------------------------------------------------------


class ProductionTimer:
    """Iterates `episodes`, summing in `cpu_s` the CPU-seconds spent producing them, not what
    the caller does with each (writing, progress): a dataset's recorded cost.

        episodes = ProductionTimer(source.episodes(n, seed))
        for ep in episodes:
            writer.add(ep)
        writer.finish({"env_steps": source.env_steps, "cpu_s": episodes.cpu_s, "gpu_s": 0.0})
    """

    def __init__(self, episodes: Iterable[Episode]):
        self._episodes = iter(episodes)
        self.cpu_s = 0.0

    def __iter__(self) -> "ProductionTimer":
        return self

    def __next__(self) -> Episode:
        t0 = time.process_time()
        try:
            return next(self._episodes)
        finally:
            self.cpu_s += time.process_time() - t0



class DatasetWriter:
    """Writes one dataset directory atomically: files go to a hidden sibling directory,
    dataset.json last, then one rename makes it appear at `out_dir` (which must not exist
    or be empty). Leaving the `with` block without `finish()` removes everything.
    """

    def __init__(self, out_dir: str | Path, task: str, kind: str, episodes_per_file: int = 100):
        if episodes_per_file < 1:
            raise ValueError(f"episodes_per_file must be >= 1, got {episodes_per_file}")
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and (not self.out_dir.is_dir() or any(self.out_dir.iterdir())):
            raise ValueError(f"dataset directory {self.out_dir} already exists and is not empty")
        self.task = task
        self.kind = kind
        self.episodes_per_file = episodes_per_file
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.out_dir.with_name(f".{self.out_dir.name}.tmp-{os.getpid()}")
        if self._tmp.exists():  # left over by a crashed writer of this same pid
            shutil.rmtree(self._tmp)
        self._tmp.mkdir()
        self._pending: list[Episode] = []
        self._files: list[dict] = []
        self._returns: list[float] = []
        self._steps = 0
        self._policies: list[str] = []
        self._done = False

    def add(self, episode: Episode) -> None:
        if episode.task != self.task:
            raise ValueError(f"episode of task {episode.task!r} added to a dataset of task {self.task!r}")
        self._pending.append(episode)
        self._returns.append(episode.ret)
        self._steps += episode.length
        policy = str(episode.source.get("policy", "unknown"))
        if policy not in self._policies:
            self._policies.append(policy)
        if len(self._pending) == self.episodes_per_file:
            self._flush()

    @property
    def episodes(self) -> int:
        return len(self._returns)

    def _flush(self) -> None:
        if not self._pending:
            return
        name = f"episodes-{len(self._files):05d}.npz"
        path = self._tmp / name
        write_episodes(path, self._pending)
        self._files.append({"name": name, "episodes": len(self._pending), "sha256": sha256_file(path)})
        self._pending = []

    def finish(self, cost: dict, extra: dict | None = None) -> dict:
        """Write the last file and dataset.json, move the directory into place; returns the
        dataset.json record. `cost` needs env_steps, cpu_s, gpu_s (what producing it took)."""
        missing = [k for k in COST_KEYS if k not in cost]
        if missing:
            raise ValueError(f"dataset cost lacks {', '.join(missing)} (needs {', '.join(COST_KEYS)})")
        if not self._returns:
            raise ValueError(f"dataset {self.out_dir} would hold no episodes")
        self._flush()
        record = {
            "format_version": FORMAT_VERSION,
            "frontier_version": frontier_version(),
            "name": self.out_dir.name,
            "task": self.task,
            "source": {"kind": self.kind, "policies": self._policies},
            "episodes": len(self._returns),
            "steps": self._steps,
            "returns": return_spread(self._returns),
            "cost": dict(cost),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": self._files,
            **(extra or {}),
        }
        meta = self._tmp / META_FILE
        with open(meta, "w") as f:
            json.dump(record, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        if self.out_dir.exists():
            self.out_dir.rmdir()  # checked empty in __init__; rename cannot replace it otherwise
        os.replace(self._tmp, self.out_dir)
        self._done = True
        return record

    def abort(self) -> None:
        if not self._done and self._tmp.exists():
            shutil.rmtree(self._tmp)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.abort()


def return_spread(returns: list[float]) -> dict:
    """Mean, std and the quantiles of episode returns: how much information returns-to-go carry
    (a deterministic policy's episodes all return about the same)."""
    q = np.quantile(returns, [0.0, 0.1, 0.5, 0.9, 1.0])
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "min": float(q[0]),
            "p10": float(q[1]), "median": float(q[2]), "p90": float(q[3]), "max": float(q[4])}


def write_dataset(
    out_dir: str | Path, task: str, kind: str, episodes: Iterable[Episode], cost: dict, extra: dict | None = None
) -> dict:
    """Write `episodes` as a dataset in one call; returns the dataset.json record."""
    with DatasetWriter(out_dir, task, kind) as w:
        for ep in episodes:
            w.add(ep)
        return w.finish(cost, extra)


# -- reading -----------------------------------------------------------------------------


def read_dataset_info(path: str | Path) -> dict:
    """The dataset.json record of a dataset directory (ValueError naming the problem file)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"dataset directory {path} does not exist")
    meta = path / META_FILE
    record = read_json_object(meta, "dataset record", ("format_version", "task", "source", "episodes", "cost", "files"),
                              missing_hint=f"{path} is not a dataset or was not completely written")
    if record["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"{meta}: format_version {record['format_version']!r} is not supported (expected {FORMAT_VERSION})")
    files = record["files"]
    entries_ok = isinstance(files, list) and all(
        isinstance(f, dict) and {"name", "episodes", "sha256"} <= set(f) for f in files)
    if not entries_ok or sum(f["episodes"] for f in files) != record["episodes"]:
        raise ValueError(f"{meta}: its file list does not add up to {record['episodes']!r} episodes")
    for f in files:
        if not (path / f["name"]).is_file():
            raise ValueError(f"episode file {path / f['name']} listed in {meta} is missing")
    return record


def read_dataset_file(path: str | Path, entry: dict, task: str) -> list[Episode]:
    """Episodes of one file of a dataset, checked against its dataset.json `entry`."""
    file = Path(path) / entry["name"]
    if sha256_file(file) != entry["sha256"]:
        raise ValueError(f"episode file {file} is corrupt: its checksum differs from the one in {META_FILE}")
    episodes, _ = read_episodes(file)
    if len(episodes) != entry["episodes"]:
        raise ValueError(f"episode file {file} holds {len(episodes)} episodes, {META_FILE} says {entry['episodes']}")
    for ep in episodes:
        if ep.task != task:
            raise ValueError(f"episode file {file} holds an episode of task {ep.task!r}, the dataset is {task!r}")
    return episodes


def load_dataset(path: str | Path) -> tuple[dict, list[Episode]]:
    """(dataset.json record, every episode in stored order), checked file by file."""
    info = read_dataset_info(path)
    episodes = [ep for entry in info["files"] for ep in read_dataset_file(path, entry, info["task"])]
    return info, episodes


class DatasetExpert(ExpertSource):
    """Stored episodes as an expert source (kind "dataset", policy_id = the dataset's name).

    `episodes(n, seed)` yields n episodes in stored order starting at index
    `seed % count` and wrapping around, so different seeds pick different subsets of a
    large dataset; asking for more episodes than it holds is an error, never a silent
    repeat. Arrays are exactly as stored; the source dict is the stored provenance plus
    "dataset" (this name) and "dataset_index". `env_steps` stays 0: what producing the
    data cost is `production_cost` (dataset.json's cost).
    """

    def __init__(self, spec: TaskSpec, path: str | Path):
        self.path = Path(path)
        self.info = read_dataset_info(self.path)
        if self.info["task"] != spec.name:
            raise ValueError(f"dataset {self.path} holds task {self.info['task']!r}, not {spec.name!r}")
        super().__init__(spec, "dataset", str(self.info.get("name", self.path.name)))
        self.production_cost: dict = dict(self.info["cost"])
        self.count: int = int(self.info["episodes"])

    def episodes(self, n: int, seed: int) -> Iterator[Episode]:
        if n > self.count:
            raise ValueError(f"dataset {self.path} holds {self.count} episodes, {n} were asked for")
        start = seed % self.count
        wanted = [(start + j) % self.count for j in range(n)]
        cached: dict[int, list[Episode]] = {}  # file index -> its episodes, loaded on first use
        firsts = np.cumsum([0] + [f["episodes"] for f in self.info["files"]])  # (files + 1,)
        for k in wanted:
            fi = int(np.searchsorted(firsts, k, side="right") - 1)
            if fi not in cached:
                # Indices run consecutively (mod count): only wrapping back into the first file re-reads one.
                cached.clear()
                cached[fi] = read_dataset_file(self.path, self.info["files"][fi], self.info["task"])
            ep = cached[fi][k - firsts[fi]]
            ep.source = {**ep.source, "dataset": self.policy_id, "dataset_index": k}
            yield ep


# -- Minari ------------------------------------------------------------------------------


@dataclass
class _MinariEnvVar:
    """Points MINARI_DATASETS_PATH at `root` for the duration of a block (Minari reads it
    when it creates a dataset), restoring the previous value after."""

    root: Path

    def __enter__(self):
        self._old = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = str(self.root)

    def __exit__(self, *exc):
        if self._old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = self._old


def check_minari_id(dataset_id: str) -> None:
    """ValueError unless `dataset_id` is a valid Minari id ("[namespace/]name-v<N>")."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):  # Minari raises TypeError when the version is missing
        raise ValueError(f"malformed Minari dataset id {dataset_id!r} (expected [namespace/]name-v<N>)") from None


def minari_dataset_dir(minari_root: str | Path, dataset_id: str) -> Path:
    return Path(minari_root) / dataset_id


def export_minari(
    dataset_dir: str | Path, minari_root: str | Path, dataset_id: str, spec: TaskSpec
) -> Path:
    """Write our dataset as the Minari dataset `dataset_id` under `minari_root` (local only).

    Spaces are those of the env the agent sees (`TaskSpec.make_env`: float32 vectors, uint8
    images unencoded, continuous actions in [-1, 1]). Minari stores T+1 observations per
    episode; ours has no final observation, so the last one is repeated and the episode
    metadata says so ("final_observation_repeated"). Each episode's metadata carries its
    provenance as JSON under "frontier_source"; the dataset metadata carries our
    dataset.json (cost included) under "frontier_dataset". Returns the Minari dataset path.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    check_minari_id(dataset_id)
    info, episodes = load_dataset(dataset_dir)
    if spec.name != info["task"]:
        raise ValueError(f"dataset {dataset_dir} holds task {info['task']!r}, not {spec.name!r}")
    target = minari_dataset_dir(minari_root, dataset_id)
    if target.exists():
        raise ValueError(f"Minari dataset {dataset_id!r} already exists at {target}")
    env = spec.make_env()
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    buffers = []
    for i, ep in enumerate(episodes):
        T = ep.length
        ends = np.zeros(T, dtype=bool)
        ends[-1] = True
        seed = ep.source.get("seed")
        buffers.append(EpisodeBuffer(
            id=i,
            seed=seed if isinstance(seed, int) else None,
            observations=np.concatenate([ep.observations, ep.observations[-1:]]),  # (T + 1, ...)
            actions=ep.actions,
            rewards=ep.rewards,
            terminations=ends & ep.terminated,
            truncations=ends & (not ep.terminated),
        ))
    Path(minari_root).mkdir(parents=True, exist_ok=True)
    with _MinariEnvVar(Path(minari_root)), warnings.catch_warnings():
        # Minari warns about unset author/permalink/env spec: the metadata says what this is.
        warnings.simplefilter("ignore", UserWarning)
        try:
            ds = minari.create_dataset_from_buffers(
                dataset_id, buffers, observation_space=obs_space, action_space=act_space,
                algorithm_name=f"frontier:{info['source']['kind']}", author="frontier", author_email="none",
                code_permalink="none", description=f"frontier dataset {info.get('name')} of task {spec.name}",
                data_format="arrow", jpeg_encoding=False,
            )
            ds.storage.update_episode_metadata(
                [{MINARI_SOURCE_KEY: json.dumps(ep.source), "final_observation_repeated": True} for ep in episodes],
                list(range(len(episodes))),
            )
            ds.storage.update_metadata({MINARI_DATASET_KEY: json.dumps(info), "frontier_task": spec.name})
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # no half-written Minari dataset left behind
            raise
    return target


def _minari_data_path(minari_root_or_path: str | Path, dataset_id: str | None) -> Path:
    """The directory holding a Minari dataset's metadata.json: <root>/<id>/data, or a path
    to a dataset directory (or its data/ directory) when no id is given."""
    base = Path(minari_root_or_path)
    if dataset_id is not None:
        check_minari_id(dataset_id)
        base = minari_dataset_dir(base, dataset_id)
    for candidate in (base / "data", base):
        if (candidate / "metadata.json").is_file():
            return candidate
    raise ValueError(f"no Minari dataset at {base} (no data/metadata.json)")


def import_minari(
    minari_root_or_path: str | Path, dataset_id: str | None, out_dir: str | Path, spec: TaskSpec,
    episodes: int | None = None,
) -> dict:
    """Read a local Minari dataset into our format at `out_dir`; returns its dataset.json record.

    Observations drop Minari's final one (T+1 -> T) and are cast to the agent dtypes;
    Box actions are rescaled from the dataset's action bounds to [-1, 1]. Shapes must match
    the task's env. Provenance: an episode exported by frontier gets its original source
    back; any other gets {"kind": "dataset", "policy": "minari:<id>", "seed", "minari_episode"}.
    Cost: the exporting frontier dataset's cost if recorded, else the steps stored as a
    lower bound ("cost_lower_bound": true).
    """
    import gymnasium as gym
    from minari import MinariDataset

    data_path = _minari_data_path(minari_root_or_path, dataset_id)
    try:
        ds = MinariDataset(data_path)
    except Exception as e:  # Minari raises assorted errors for bad metadata
        raise ValueError(f"Minari dataset at {data_path} is unreadable: {type(e).__name__}: {e}") from None
    mid = ds.id
    total = ds.total_episodes
    if episodes is not None and not 0 < episodes <= total:
        raise ValueError(f"Minari dataset {mid!r} holds {total} episodes, {episodes} were asked for")
    count = total if episodes is None else episodes
    env = spec.make_env()
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    src_act = ds.action_space
    if type(src_act) is not type(act_space) or getattr(src_act, "shape", None) != getattr(act_space, "shape", None):
        raise ValueError(f"Minari dataset {mid!r} has action space {src_act}, task {spec.name!r} has {act_space}")
    if ds.observation_space.shape != obs_space.shape:
        raise ValueError(f"Minari dataset {mid!r} has observation space {ds.observation_space}, "
                         f"task {spec.name!r} has {obs_space}")
    metadata = ds.storage.metadata
    frontier_info = json.loads(metadata[MINARI_DATASET_KEY]) if MINARI_DATASET_KEY in metadata else None
    if frontier_info is not None and frontier_info.get("task") != spec.name:
        raise ValueError(
            f"Minari dataset {mid!r} was exported from task {frontier_info.get('task')!r}, not {spec.name!r}")
    ep_meta = list(ds.storage.get_episode_metadata(ds.episode_indices[:count]))
    # The agent's observation dtypes: float32 vectors, uint8 images, int64 discrete states.
    obs_dtype = obs_space.dtype if isinstance(obs_space, gym.spaces.Box) else np.int64

    def converted() -> Iterator[Episode]:
        for meta, e in zip(ep_meta, ds.iterate_episodes(ds.episode_indices[:count])):
            obs = np.asarray(e.observations)[:-1].astype(obs_dtype)  # (T, ...)
            if isinstance(act_space, gym.spaces.Box):
                low, high = src_act.low.astype(np.float64), src_act.high.astype(np.float64)
                a = np.asarray(e.actions, dtype=np.float64)  # (T, A)
                if np.all(low == -1.0) and np.all(high == 1.0):
                    acts = a.astype(np.float32)  # already agent units: keep them bit for bit
                else:
                    acts = (2.0 * (a - low) / (high - low) - 1.0).astype(np.float32)
            else:
                acts = np.asarray(e.actions, dtype=np.int64).reshape(-1)  # (T,)
            if MINARI_SOURCE_KEY in meta:
                source = json.loads(meta[MINARI_SOURCE_KEY])
            else:
                source = {"kind": "dataset", "policy": f"minari:{mid}", "seed": meta.get("seed"),
                          "minari_episode": int(e.id)}
            yield Episode(task=spec.name, observations=obs, actions=acts,
                          rewards=np.asarray(e.rewards, dtype=np.float32),
                          terminated=bool(np.asarray(e.terminations)[-1]), source=source)

    extra = {"minari": {"dataset_id": mid, "path": str(data_path.parent)}}
    if frontier_info is not None and count == total:
        cost = frontier_info["cost"]
    else:
        steps = sum(int(m.get("total_steps", 0)) for m in ep_meta)
        cost = {"env_steps": steps, "cpu_s": 0.0, "gpu_s": 0.0}
        extra["cost_lower_bound"] = True
    return write_dataset(out_dir, spec.name, "minari", converted(), cost, extra)
