"""The one SQLite database: `Store` joins the per-aggregate components into one object.

Why a facade: every stage already holds one `Store` and calls `store.add_mail(...)`,
`store.claim_test_request(...)`; the components share one connection and one transaction (a
stage writes its result and marks its item done atomically, design rule 5), so they are parts
of one object rather than objects of their own. Each component's SQL lives in its own module
(mails.py, series.py, testruns.py, commands.py, outbox.py, services.py); `Connection`
(connection.py) owns the connection, the transaction and the migrations. A new method goes to
the component whose table it touches, never here.
"""

from __future__ import annotations

from patchbot.store.commands import Commands
from patchbot.store.connection import Connection
from patchbot.store.mails import Mails
from patchbot.store.outbox import Outbox
from patchbot.store.series import Series
from patchbot.store.services import Services
from patchbot.store.testruns import TestRuns


class Store(Mails, Series, TestRuns, Commands, Outbox, Services, Connection):
    """One SQLite database file; methods are named for what they mean, not the SQL they run.

    The methods are the components'; see each module.
    """
