-- Temporary uploads: a file_id belongs to one institution and expires unused after a while.
-- The entry that uses it deletes the row in the transaction that creates its certificate, which
-- takes over the stored file and keeps the file_id: so a file_id is consumed once.

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
    CONSTRAINT pk__uploads PRIMARY KEY (id),
    CONSTRAINT uq__uploads__uuid UNIQUE (uuid),
    CONSTRAINT fk__uploads__institution_id__institutions
        FOREIGN KEY (institution_id) REFERENCES institutions (id) ON DELETE CASCADE
);

-- quota: the sum of an institution's pending uploads
CREATE INDEX ix__uploads__institution_id ON uploads (institution_id) INCLUDE (size);
-- the sweeper: expired uploads, oldest first
CREATE INDEX ix__uploads__expires_at ON uploads (expires_at);
