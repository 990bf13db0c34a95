"""Where suites run: each executor takes Workspaces and returns SuiteRuns (protocol.py); local.py runs
them in a sandbox here, gitlab.py on GitLab CI.
"""
