"""Test one series version: choose the base, apply, plan the suites, run them (executors/), read their
reports, decide the verdict.
"""
