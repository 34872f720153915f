-- Webhooks: the endpoints an institution registers, one delivery per endpoint and event, and
-- one row per HTTP attempt of a delivery (the log the institution reads).

CREATE TABLE webhook_endpoints (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    uuid             uuid        NOT NULL DEFAULT gen_random_uuid(),
    institution_id   bigint      NOT NULL,
    url              text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    description      text        CHECK (length(description) <= 1000),
    events           text[]      NOT NULL CHECK (cardinality(events) >= 1),
    -- whsec_...: returned once, in the response that creates the endpoint
    secret           text        NOT NULL,
    active           boolean     NOT NULL DEFAULT true,
    disabled_reason  text,
    disabled_at      timestamptz,
    -- the first failed attempt since the last success: the clock of the automatic disable
    failing_since    timestamptz,
    last_success_at  timestamptz,
    last_failure_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk__webhook_endpoints PRIMARY KEY (id),
    CONSTRAINT uq__webhook_endpoints__uuid UNIQUE (uuid),
    CONSTRAINT fk__webhook_endpoints__institution_id__institutions
        FOREIGN KEY (institution_id) REFERENCES institutions (id) ON DELETE CASCADE
);
-- the list, and the subscription check made with every state change (a few rows per institution)
CREATE INDEX ix__webhook_endpoints__institution_id__id ON webhook_endpoints (institution_id, id DESC);

CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    -- the delivery id (X-Webhook-ID, webhook-id, the payload's webhook_id): the same on retries
    uuid             uuid        NOT NULL DEFAULT gen_random_uuid(),
    endpoint_id      bigint      NOT NULL,
    event            text        NOT NULL CHECK (length(event) BETWEEN 1 AND 128),
    -- the certificate the event is about; no foreign key: the institution's cascade covers both
    certificate_id   bigint,
    -- the payload's "data", fixed when the event happens, so every retry sends the same body
    data             jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts         int         NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CONSTRAINT pk__webhook_deliveries PRIMARY KEY (id),
    CONSTRAINT uq__webhook_deliveries__uuid UNIQUE (uuid),
    CONSTRAINT fk__webhook_deliveries__endpoint_id__webhook_endpoints
        FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints (id) ON DELETE CASCADE
);
CREATE INDEX ix__webhook_deliveries__endpoint_id__id ON webhook_deliveries (endpoint_id, id DESC);
-- housekeeping: finished deliveries, oldest first (pending ones are never purged)
CREATE INDEX ix__webhook_deliveries__finished_at ON webhook_deliveries (finished_at)
    WHERE finished_at IS NOT NULL;
-- one "created" per certificate and endpoint: a batch's fan-out job may run again after a crash
CREATE UNIQUE INDEX uq__webhook_deliveries__created ON webhook_deliveries (endpoint_id, certificate_id)
    WHERE event = 'certificate_application.created';

CREATE TABLE webhook_attempts (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    delivery_id      bigint      NOT NULL,
    endpoint_id      bigint      NOT NULL,
    attempt          int         NOT NULL CHECK (attempt >= 1),
    -- NULL: no HTTP response (refused, timed out, TLS error: see error)
    status_code      int,
    duration_ms      int         NOT NULL CHECK (duration_ms >= 0),
    error            text        CHECK (length(error) <= 2000),
    -- the start of the response body, for the institution's debugging; never more than this
    response_excerpt text        CHECK (length(response_excerpt) <= 256),
    next_retry_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk__webhook_attempts PRIMARY KEY (id),
    CONSTRAINT fk__webhook_attempts__delivery_id__webhook_deliveries
        FOREIGN KEY (delivery_id) REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    CONSTRAINT fk__webhook_attempts__endpoint_id__webhook_endpoints
        FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints (id) ON DELETE CASCADE
);
CREATE INDEX ix__webhook_attempts__endpoint_id__id ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX ix__webhook_attempts__delivery_id ON webhook_attempts (delivery_id);
