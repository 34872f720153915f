-- Files that may exist in storage without a row that names them: written just before an upload
-- row is committed (a crash in between would otherwise leave a file nobody knows), or whose
-- delete failed. Housekeeping deletes the file and then the row, once the row is old enough
-- that no request can still be writing it. The row that takes the file over (the upload)
-- deletes the intent in its own transaction.
CREATE TABLE file_intents (
    storage_key  text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk__file_intents PRIMARY KEY (storage_key)
);
CREATE INDEX ix__file_intents__created_at ON file_intents (created_at);
