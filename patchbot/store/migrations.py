"""The schema, as the migrations that build it: MIGRATIONS[n] takes version n to n+1.

A new table or column is a new entry at the end; an entry is never edited once released.
"""

from __future__ import annotations



MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: mails, series, their patches, and every Message-ID seen in a series' thread.
    """
    CREATE TABLE mails (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL UNIQUE,
        synthetic_id INTEGER NOT NULL,
        raw BLOB NOT NULL,
        origin TEXT NOT NULL,
        received_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'new',      -- new | filed | rejected | failed
        reason TEXT,                             -- why rejected or failed
        kind TEXT,                               -- patch | cover | pull | reply | other
        kind_rule TEXT,
        subject TEXT,
        title TEXT,
        sender TEXT,
        sender_name TEXT,
        date TEXT,
        version INTEGER,
        counter INTEGER,
        total INTEGER,
        in_reply_to TEXT,
        details TEXT,                            -- JSON: files, trailers, pull_url, has_diff
        series_id INTEGER REFERENCES series(id)
    );
    CREATE INDEX mails_status ON mails(status);
    CREATE INDEX mails_series ON mails(series_id);
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        normalised_title TEXT NOT NULL,
        author TEXT NOT NULL,
        author_name TEXT NOT NULL,
        version INTEGER NOT NULL,
        total INTEGER,
        cover_mail_id INTEGER REFERENCES mails(id),
        date TEXT NOT NULL,
        supersedes_id INTEGER REFERENCES series(id),
        obsolete INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX series_author ON series(author, version);
    CREATE TABLE series_patches (
        series_id INTEGER NOT NULL REFERENCES series(id),
        number INTEGER NOT NULL,
        mail_id INTEGER NOT NULL REFERENCES mails(id),
        inherited INTEGER NOT NULL DEFAULT 0,   -- carried over from the version re-rolled
        PRIMARY KEY (series_id, number)
    );
    CREATE TABLE thread_refs (
        message_id TEXT PRIMARY KEY,
        series_id INTEGER NOT NULL REFERENCES series(id)
    );
    """,
    # 1 -> 2: test runs of series, and suite results at base commits (reused across series).
    """
    CREATE TABLE test_runs (
        id INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL REFERENCES series(id),
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        summary TEXT NOT NULL,                   -- JSON: what `patchbot test --json` prints
        tip_results TEXT NOT NULL                -- JSON: per-suite results at the series' head
    );
    CREATE INDEX test_runs_series ON test_runs(series_id);
    CREATE TABLE base_results (
        base_commit TEXT NOT NULL,
        suite TEXT NOT NULL,
        suite_key TEXT NOT NULL,                 -- hash of the suite's configuration
        result TEXT NOT NULL,                    -- JSON: one suite result
        PRIMARY KEY (base_commit, suite, suite_key)
    );
    """,
    # 2 -> 3: requests to test a series (the first is automatic, retests add more) and the
    # outbox of replies, each stored under a unique key before any attempt to send it.
    """
    CREATE TABLE test_requests (
        id INTEGER PRIMARY KEY,
        series_id INTEGER NOT NULL REFERENCES series(id),
        number INTEGER NOT NULL,                 -- 1 for the automatic test, then each retest
        base_ref TEXT,                           -- a base asked for, or NULL
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL,
        done_at TEXT,
        test_run_id INTEGER REFERENCES test_runs(id),
        UNIQUE (series_id, number)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,                -- series, version, kind, request: one reply each
        series_id INTEGER REFERENCES series(id),
        message_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipients TEXT NOT NULL,                -- JSON list of envelope recipients
        data BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | sent | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
    """,
    # 3 -> 4: a sender claims the replies it is sending, so that two passes at once (cron
    # overlapping a slow run) never send one twice; a dead sender's claims lapse.
    """
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claimed_until TEXT
    """,
    # 4 -> 5: maintainers' commands. A series can be ignored; every reply in a series' thread is
    # read for commands once (a row here, claimed before acting, its outcome stored after); the
    # notices given once (a refusal per thread and sender, a rate-limit note per sender and hour).
    # Replies kept before commands existed count as read: an old "patchbot: apply" must not act.
    """
    ALTER TABLE series ADD COLUMN ignored INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE test_requests ADD COLUMN suite TEXT;   -- "patchbot: retest SUITE": only that suite
    CREATE TABLE command_mails (
        mail_id INTEGER PRIMARY KEY REFERENCES mails(id),
        series_id INTEGER REFERENCES series(id),
        sender TEXT NOT NULL,
        commands INTEGER NOT NULL,               -- command lines found: the rate limit counts them
        claimed_by TEXT,                         -- host:pid handling it
        handled_at TEXT NOT NULL,
        outcome TEXT                             -- JSON: what was done, NULL while being handled
    );
    CREATE INDEX command_mails_sender ON command_mails(sender, handled_at);
    CREATE TABLE command_notices (
        scope TEXT NOT NULL,                     -- series-N (a thread) or an hour
        sender TEXT NOT NULL,
        kind TEXT NOT NULL,                      -- refused | rate-limit
        created_at TEXT NOT NULL,
        PRIMARY KEY (scope, sender, kind)
    );
    INSERT INTO command_mails (mail_id, series_id, sender, commands, handled_at, outcome)
        SELECT id, series_id, coalesce(sender, ''), 0, received_at, '"kept before commands were read"'
        FROM mails WHERE status = 'filed' AND kind NOT IN ('patch', 'cover', 'pull') AND series_id IS NOT NULL
    """,
    # 5 -> 6: the service. A test request is a job: a worker claims it under a lease it renews,
    # a claim of a dead worker lapses, and a run that could not start waits before the next try.
    # Services note themselves (for `patchbot status`) and the warnings and errors they logged.
    """
    ALTER TABLE test_requests ADD COLUMN claimed_by TEXT;
    ALTER TABLE test_requests ADD COLUMN claimed_until TEXT;
    ALTER TABLE test_requests ADD COLUMN started_at TEXT;
    ALTER TABLE test_requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE test_requests ADD COLUMN last_error TEXT;
    ALTER TABLE test_requests ADD COLUMN next_attempt_at TEXT;
    CREATE INDEX test_requests_open ON test_requests(done_at);
    CREATE TABLE services (
        claimer TEXT PRIMARY KEY,                -- host:pid:start of a `patchbot serve`
        started_at TEXT NOT NULL,
        beat_at TEXT NOT NULL,                   -- renewed while it runs
        state TEXT NOT NULL,                     -- serving | draining | stopped
        sources TEXT NOT NULL                    -- what it listens to, for status
    );
    CREATE TABLE service_events (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL
    );
    -- From now on a version superseded before its test is answered with a note. Those
    -- superseded before this schema were deliberately left alone, and stay so.
    INSERT INTO test_requests (series_id, number, reason, created_at, done_at)
        SELECT id, 1, 'superseded before it was tested (kept from schema 5)',
               strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now')
        FROM series WHERE obsolete = 1 AND id NOT IN (SELECT series_id FROM test_requests)
    """,
    # 6 -> 7: a DKIM-signed command acts once per signature (its b= value), whatever Message-ID
    # a copy of it is re-sent under.
    """
    CREATE TABLE command_signatures (
        signature TEXT PRIMARY KEY,              -- b= of the signature that vouched for the mail
        mail_id INTEGER NOT NULL REFERENCES mails(id),
        acted_at TEXT NOT NULL
    )
    """,
    # 7 -> 8: a mail whose handling raised is set aside (status 'failed') with the stage that
    # raised and when, until `patchbot requeue` puts it back. Mails marked failed before are
    # filed again: a full disk marked some, and nothing ever retried them.
    """
    ALTER TABLE mails ADD COLUMN failed_stage TEXT;
    ALTER TABLE mails ADD COLUMN failed_at TEXT;
    UPDATE mails SET status = 'new', reason = NULL WHERE status = 'failed' AND kind IS NULL
    """,
    # 8 -> 9: `patchbot: trust-deps`: a maintainer lets the environment be built with network
    # from exactly these dependency files (their digest) of this series version.
    """
    CREATE TABLE trusted_dependencies (
        series_id INTEGER NOT NULL REFERENCES series(id),
        environment TEXT NOT NULL,
        files_digest TEXT NOT NULL,              -- environments.files_digest of the key files trusted
        trusted_by TEXT NOT NULL,
        trusted_at TEXT NOT NULL,
        PRIMARY KEY (series_id, environment, files_digest)
    )
    """,
    # 9 -> 10: what a series' own mails, its author's or a maintainer's replies say it is based
    # on or depends on (Based-on:, Depends-on:), newest mail first; a stranger's are not kept.
    """
    CREATE TABLE series_hints (
        series_id INTEGER NOT NULL REFERENCES series(id),
        mail_id INTEGER NOT NULL REFERENCES mails(id),
        name TEXT NOT NULL,                      -- "Based-on" or "Depends-on"
        value TEXT NOT NULL,
        PRIMARY KEY (series_id, mail_id, name, value)
    )
    """,
    # 10 -> 11: series whose author's mails carry a DKIM signature of the author's domain:
    # only mails so signed (or a maintainer's) may add to, re-roll or steer them (series.py).
    """
    CREATE TABLE signed_series (
        series_id INTEGER PRIMARY KEY REFERENCES series(id),
        signed_at TEXT NOT NULL
    )
    """,
    # 11 -> 12: this database's own random id, made once: a reply's Message-ID is derived from
    # it and the reply's key, so a resend reuses its id and two databases (staging and
    # production, a reset) never send the same one (issue 13; archives dropped one as a duplicate).
    """
    CREATE TABLE instance (
        only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
        id TEXT NOT NULL
    );
    INSERT INTO instance (only_row, id) VALUES (1, lower(hex(randomblob(16))))
    """,
    # 12 -> 13: a series is a pull request's (kind 'pull') or patches'; a pull's URL, ref, and the
    # tip and base commits its mail announced are what its test fetches and checks (pulls.py).
    """
    ALTER TABLE series ADD COLUMN kind TEXT NOT NULL DEFAULT 'patch';
    ALTER TABLE series ADD COLUMN pull_url TEXT;
    ALTER TABLE series ADD COLUMN pull_ref TEXT;
    ALTER TABLE series ADD COLUMN pull_tip TEXT;
    ALTER TABLE series ADD COLUMN pull_base TEXT
    """,
    # 13 -> 14: a test request whose runs the machine kept failing (infrastructure retries spent,
    # issue 12 item 6) ends "given up": the list got one short reply, status keeps it as an error.
    """
    ALTER TABLE test_requests ADD COLUMN given_up_at TEXT
    """,
)
