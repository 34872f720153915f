-- Vault certificates, their bulk batches, the platform's recipient accounts, the recipient email
-- outbox, and idempotency keys of POST requests.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE batches (
    id                      bigint GENERATED ALWAYS AS IDENTITY,
    uuid                    uuid        NOT NULL DEFAULT gen_random_uuid(),
    institution_id          bigint      NOT NULL,
    status                  text        NOT NULL DEFAULT 'processing'
        CHECK (status IN ('processing', 'completed', 'partially_completed', 'failed')),
    total_certificates      int         NOT NULL CHECK (total_certificates > 0),
    -- counters kept by the pipeline, so a status poll never counts a batch's certificates
    processed_certificates  int         NOT NULL DEFAULT 0,
    failed_certificates     int         NOT NULL DEFAULT 0,
    completion_date         timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk__batches PRIMARY KEY (id),
    CONSTRAINT uq__batches__uuid UNIQUE (uuid),
    CONSTRAINT fk__batches__institution_id__institutions
        FOREIGN KEY (institution_id) REFERENCES institutions (id) ON DELETE CASCADE,
    CONSTRAINT ck__batches__counts
        CHECK (processed_certificates + failed_certificates <= total_certificates
               AND processed_certificates >= 0 AND failed_certificates >= 0)
);
CREATE INDEX ix__batches__institution_id__id ON batches (institution_id, id DESC);

CREATE TABLE recipients (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    uuid        uuid        NOT NULL DEFAULT gen_random_uuid(),
    email       text        NOT NULL CHECK (length(email) BETWEEN 3 AND 255),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk__recipients PRIMARY KEY (id),
    CONSTRAINT uq__recipients__uuid UNIQUE (uuid)
);
CREATE UNIQUE INDEX uq__recipients__lower_email ON recipients (lower(email));

CREATE TABLE certificates (
    id                   bigint GENERATED ALWAYS AS IDENTITY,
    uuid                 uuid        NOT NULL DEFAULT gen_random_uuid(),
    institution_id       bigint      NOT NULL,
    batch_id             bigint,
    entry_index          int,
    trigger_context      text        NOT NULL CHECK (trigger_context IN ('bulk_upload', 'single_upload')),
    status               text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'generated', 'failed', 'revoked')),
    reference_id         text,
    certificate_title    text        NOT NULL CHECK (length(certificate_title) BETWEEN 1 AND 255),
    full_name            text        NOT NULL CHECK (length(full_name) BETWEEN 1 AND 255),
    applicant_email      text        NOT NULL CHECK (length(applicant_email) BETWEEN 3 AND 255),
    issue_date           date,
    details              text        CHECK (length(details) <= 1000),
    -- the original file, taken over from the upload (file_id) that the entry consumed
    file_id              uuid        NOT NULL,
    original_key         text        NOT NULL,
    original_name        text        NOT NULL,
    original_mime        text        NOT NULL,
    original_size        bigint      NOT NULL,
    original_sha256      text        NOT NULL,
    -- artifacts, set when generated
    qrcode_key           text,
    barcode_key          text,
    verified_pdf_key     text,
    verified_pdf_size    bigint,
    verified_pdf_sha256  text,
    recipient_id         bigint,
    assigned_at          timestamptz,
    error                text,
    generated_at         timestamptz,
    revoked_at           timestamptz,
    revocation_reason    text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk__certificates PRIMARY KEY (id),
    CONSTRAINT uq__certificates__uuid UNIQUE (uuid),
    CONSTRAINT fk__certificates__institution_id__institutions
        FOREIGN KEY (institution_id) REFERENCES institutions (id) ON DELETE CASCADE,
    CONSTRAINT fk__certificates__batch_id__batches
        FOREIGN KEY (batch_id) REFERENCES batches (id) ON DELETE CASCADE,
    CONSTRAINT fk__certificates__recipient_id__recipients
        FOREIGN KEY (recipient_id) REFERENCES recipients (id) ON DELETE SET NULL
);
-- text_pattern_ops: the same index serves uniqueness and reference-id prefix search
CREATE UNIQUE INDEX uq__certificates__reference_id ON certificates (reference_id text_pattern_ops);
-- the list, newest first, and its filters; all scoped to one institution
CREATE INDEX ix__certificates__institution_id__id ON certificates (institution_id, id DESC);
CREATE INDEX ix__certificates__institution_id__status ON certificates (institution_id, status, id DESC);
CREATE INDEX ix__certificates__institution_id__email
    ON certificates (institution_id, lower(applicant_email), id DESC);
CREATE INDEX ix__certificates__batch_id ON certificates (batch_id, id) WHERE batch_id IS NOT NULL;
-- search: substring match over reference id, title, name and email
CREATE INDEX ix__certificates__search ON certificates USING gin (
    (lower(coalesce(reference_id, '') || ' ' || certificate_title || ' ' || full_name || ' '
           || applicant_email)) gin_trgm_ops
);

-- one email per certificate: the row is written in the transaction that marks it generated
CREATE TABLE email_outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    certificate_id   bigint      NOT NULL,
    message_id       text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         int         NOT NULL DEFAULT 0,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    CONSTRAINT pk__email_outbox PRIMARY KEY (id),
    CONSTRAINT uq__email_outbox__certificate_id UNIQUE (certificate_id),
    CONSTRAINT fk__email_outbox__certificate_id__certificates
        FOREIGN KEY (certificate_id) REFERENCES certificates (id) ON DELETE CASCADE
);

CREATE TABLE idempotency_keys (
    institution_id   bigint      NOT NULL,
    key              text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash     bytea       NOT NULL,
    state            text        NOT NULL DEFAULT 'in_flight' CHECK (state IN ('in_flight', 'done')),
    -- who holds an in-flight key: only that request may record its response or release it
    claim_token      uuid        NOT NULL DEFAULT gen_random_uuid(),
    response_status  int,
    response_body    jsonb,
    locked_at        timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk__idempotency_keys PRIMARY KEY (institution_id, key),
    CONSTRAINT fk__idempotency_keys__institution_id__institutions
        FOREIGN KEY (institution_id) REFERENCES institutions (id) ON DELETE CASCADE
);
CREATE INDEX ix__idempotency_keys__created_at ON idempotency_keys (created_at);

-- Certificate counts per institution and status, so a list's total needs no count over up to
-- millions of rows. Statement-level triggers append one aggregated delta row per institution and
-- status a statement changed (a 10,000-row COPY adds one row, not 10,000); readers sum the
-- deltas, and housekeeping folds them together. Appending never waits on a hot counter row.
CREATE TABLE certificate_counts (
    institution_id  bigint NOT NULL,
    status          text   NOT NULL,
    delta           bigint NOT NULL
);
CREATE INDEX ix__certificate_counts__institution_id ON certificate_counts (institution_id, status);

CREATE FUNCTION certificate_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO certificate_counts (institution_id, status, delta)
    SELECT institution_id, status, count(*) FROM new_rows GROUP BY institution_id, status;
    RETURN NULL;
END $$;

CREATE FUNCTION certificate_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO certificate_counts (institution_id, status, delta)
    SELECT institution_id, status, sum(delta) FROM (
        SELECT institution_id, status, 1 AS delta FROM new_rows
        UNION ALL
        SELECT institution_id, status, -1 FROM old_rows
    ) changes GROUP BY institution_id, status HAVING sum(delta) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION certificate_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO certificate_counts (institution_id, status, delta)
    SELECT institution_id, status, -count(*) FROM old_rows GROUP BY institution_id, status;
    RETURN NULL;
END $$;

CREATE TRIGGER tr__certificates__counts_insert AFTER INSERT ON certificates
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION certificate_counts_insert();
CREATE TRIGGER tr__certificates__counts_update AFTER UPDATE ON certificates
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION certificate_counts_update();
CREATE TRIGGER tr__certificates__counts_delete AFTER DELETE ON certificates
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION certificate_counts_delete();
