"""Allow `python -m patchbot`."""

from patchbot.cli.entry import main

raise SystemExit(main())
