"""Which executor runs a configuration's suites: `executor = "local"` or `"gitlab"` in the config."""

from __future__ import annotations

from patchbot.config.records import Config
from patchbot.testing.executors.local import LocalExecutor
from patchbot.testing.executors.protocol import Executor


def executor_for(config: Config) -> Executor:
    """The executor the config names (config/load.py has already refused any other name)."""
    if config.executor == "gitlab":
        # python-gitlab and requests load only where GitLab runs the suites.
        from patchbot.testing.executors.gitlab import GitlabExecutor

        return GitlabExecutor(config)
    return LocalExecutor(config)
