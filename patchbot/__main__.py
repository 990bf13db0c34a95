"""Allow `python -m patchbot`."""

from patchbot.cli import main

raise SystemExit(main())
