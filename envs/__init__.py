"""The gymnasium side: task specs, the registry and plugins, built-in suites, expert sources.

Imports gymnasium; never ray.
"""
