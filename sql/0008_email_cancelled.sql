-- A revoked certificate's email that was not sent yet is cancelled, never sent afterwards.
ALTER TABLE email_outbox DROP CONSTRAINT email_outbox_status_check;
ALTER TABLE email_outbox ADD CONSTRAINT ck__email_outbox__status
    CHECK (status IN ('pending', 'sent', 'failed', 'cancelled'));
