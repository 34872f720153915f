-- Rate-limit counters shared by every service process: one row per (bucket, subject, window).
-- UNLOGGED: no WAL for a counter written on every request; after a crash the table comes back
-- empty, which only forgets the current minute's counts.

CREATE UNLOGGED TABLE rate_limits (
    bucket        text        NOT NULL,
    -- a client address (an IPv6 /64), or a token id
    subject       text        NOT NULL,
    window_start  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    -- not indexed, so the increment on every request is a HOT update
    hits          int         NOT NULL CHECK (hits >= 0),
    CONSTRAINT pk__rate_limits PRIMARY KEY (bucket, subject, window_start)
);
-- the purge: windows that have ended
CREATE INDEX ix__rate_limits__expires_at ON rate_limits (expires_at);
