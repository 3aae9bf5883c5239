"""The comparison behind `frontier compare` (cli/compare.py): generalist versus closest
specialist on a target task at equal compute.

    frontier compare configs/compare/idp-2core.yaml                # Ray tasks, 1 CPU each
    frontier compare configs/compare/idp-2core.yaml --serial       # one process
    frontier compare SPEC.yaml --out DIR --address ray://head:10001

For every seed, these arms train on the target T under one budget of learner FLOPs each,
pretraining included:
  scratch     T's demonstrations only (offline, then online ODT fine-tuning);
  specialist  the single-task model of the source closest to T, fine-tuned on T (the
              source model's training is charged to the arm);
  related     multi-task pretraining on the `related` sources, then fine-tuning on T;
  generalist  multi-task pretraining on every source, then fine-tuning on T; and before
              fine-tuning, its zero-shot score (T's adapter and head untrained) and its
              few-shot score (adapter/head/task-embedding trained on a few demonstrations
              with the transformer frozen).
A transfer matrix fine-tunes each task's single-task model on each other task at a small
budget, against scratch on that task at the same budget.

Every piece of work is a job with a directory under the output directory: an expert
dataset (`seed<s>/data/<task>`, collected once per task and seed and read by every run that
needs it) or a normal run directory (config.yaml, tb/, checkpoints/, evals.jsonl,
summary.json). Jobs run as Ray tasks with one CPU each (training runs a GPU too where the cluster
has GPUs: `job_options`), each waiting for the jobs it needs;
`--serial` runs them in order in this process. A finished job (dataset.json, or
summary.json with status finished) is skipped on the next invocation and an unfinished
run resumes from its last checkpoint, so an interrupted compare continues where it stopped.
The report (report.md, PNGs, results.json) is written from whatever has finished.

Modules: spec (the comparison spec and its checks), plan (the jobs and arms of a spec),
jobs (running them, serially or as Ray tasks), report (report.md, plots, results.json),
stats (IQM, bootstrap intervals, compute to reach a level, Pareto frontiers).
"""
