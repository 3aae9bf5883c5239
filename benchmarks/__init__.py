"""Benchmarks behind `frontier bench`: each module measures one thing side by side and writes JSON, markdown and PNG under benchmarks/results/."""
