-- A sweeper marks the intents it takes (and re-arms their time) before deleting their files,
-- and removes them only after: a crash in between leaves them to be swept again. An upload
-- can no longer take over a file whose intent a sweeper holds.
ALTER TABLE file_intents ADD COLUMN sweeping boolean NOT NULL DEFAULT false;
