-- Temporary uploads: a file_id belongs to one institution, expires unused, and is consumed once.

CREATE TABLE uploads (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    uuid             uuid        NOT NULL DEFAULT gen_random_uuid(),
    institution_id   bigint      NOT NULL,
    storage_key      text        NOT NULL,
    file_name        text        NOT NULL,
    mime_type        text        NOT NULL,
    size             bigint      NOT NULL CHECK (size > 0),
    sha256           text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    consumed_at      timestamptz,
    -- the certificate that consumed it (a foreign key is added with the certificates table)
    certificate_id   bigint,
    CONSTRAINT pk__uploads PRIMARY KEY (id),
    CONSTRAINT uq__uploads__uuid UNIQUE (uuid),
    CONSTRAINT fk__uploads__institution_id__institutions
        FOREIGN KEY (institution_id) REFERENCES institutions (id) ON DELETE CASCADE,
    CONSTRAINT ck__uploads__consumed CHECK ((consumed_at IS NULL) = (certificate_id IS NULL))
);

-- quota: the sum of an institution's unconsumed uploads
CREATE INDEX ix__uploads__institution_id__unconsumed
    ON uploads (institution_id) INCLUDE (size) WHERE consumed_at IS NULL;
-- the sweeper: expired, unconsumed uploads, oldest first
CREATE INDEX ix__uploads__expires_at__unconsumed ON uploads (expires_at) WHERE consumed_at IS NULL;
