-- The job engine's hot table: only ready (state 0) and running (state 1) jobs live here.
-- A finished job is deleted in the transaction that records its effects in the domain tables.

-- Fencing tokens: a new one at every claim, so a worker whose lease expired cannot finish a
-- job that another worker has claimed since.
CREATE SEQUENCE jobs_lease_token_seq AS bigint;

CREATE TABLE jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    kind             text        NOT NULL,
    -- the row the job is about (e.g. a certificate id)
    ref_id           bigint,
    payload          jsonb,
    state            smallint    NOT NULL DEFAULT 0,
    priority         smallint    NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    -- attempts started (a graceful shutdown gives the interrupted attempt back)
    attempts         int         NOT NULL DEFAULT 0,
    -- NULL: the job type's limit, else the engine's (JOB_MAX_ATTEMPTS)
    max_attempts     int,
    lease_token      bigint,
    -- not indexed, so a heartbeat that extends it is a HOT update
    locked_until     timestamptz,
    worker_id        text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk__jobs PRIMARY KEY (id),
    CONSTRAINT ck__jobs__state CHECK (state IN (0, 1)),
    CONSTRAINT ck__jobs__max_attempts CHECK (max_attempts IS NULL OR max_attempts >= 1),
    CONSTRAINT ck__jobs__lease CHECK (state = 0 OR (lease_token IS NOT NULL AND locked_until IS NOT NULL))
) WITH (
    -- room on each page for HOT heartbeats; vacuum early and fast, the table churns constantly
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_analyze_threshold = 500,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_vacuum_cost_limit = 10000
);

-- the claim path: ready jobs in claim order, and nothing else
CREATE INDEX ix__jobs__ready ON jobs (priority DESC, run_at, id) WHERE state = 0;
-- running jobs, to reclaim expired leases (few rows; keyed on a column heartbeats don't change)
CREATE INDEX ix__jobs__running ON jobs (id) WHERE state = 1;
