-- jobs-outbox's tables. `jobs_outbox::migrate` applies this file; it is idempotent, so it can
-- also be copied into an application's own migrations.

-- Jobs written in the application's transactions, waiting for the relay to publish them.
CREATE TABLE IF NOT EXISTS jobs_outbox (
    id              bigserial   PRIMARY KEY,
    message_id      text        NOT NULL,
    job             text        NOT NULL,
    exchange        text        NOT NULL,
    routing_key     text        NOT NULL,
    -- content type, timestamp, priority and headers, as jobs_outbox writes them.
    properties      jsonb       NOT NULL,
    body            bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Failed publishes: how many, the last error, and when the relay tries again.
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jobs_outbox_due ON jobs_outbox (next_attempt_at, id);

-- Unique keys of jobs not handled yet: `unique_key(k)` inserts one, the job's inbox
-- transaction deletes it.
CREATE TABLE IF NOT EXISTS jobs_unique (
    key        text        PRIMARY KEY,
    message_id text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS jobs_unique_message_id ON jobs_unique (message_id);

-- Messages handled, by job: a handler's inbox transaction inserts its row.
CREATE TABLE IF NOT EXISTS jobs_inbox (
    message_id text        NOT NULL,
    job        text        NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, job)
);
CREATE INDEX IF NOT EXISTS jobs_inbox_handled_at ON jobs_inbox (handled_at);

-- Wakes the relays when a transaction that wrote jobs commits (NOTIFY is delivered at commit,
-- and not at all on rollback); once per statement, as one wake-up reads every row due.
CREATE OR REPLACE FUNCTION jobs_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jobs_outbox', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS jobs_outbox_notify ON jobs_outbox;
CREATE TRIGGER jobs_outbox_notify AFTER INSERT ON jobs_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_outbox_notify();
