-- A certificate's QR code and barcode SVGs (about 2 KB each) are kept in the database, beside
-- its row, rather than as two files of their own: creating, fsyncing and renaming two files
-- (and their directory) per certificate cost more than the rest of its bookkeeping. Rows
-- generated before keep their files (certificates.qrcode_key / barcode_key), still served.
CREATE TABLE certificate_codes (
    certificate_id  bigint NOT NULL,
    qr_code_svg     bytea  NOT NULL,
    barcode_svg     bytea  NOT NULL,
    CONSTRAINT pk__certificate_codes PRIMARY KEY (certificate_id),
    CONSTRAINT fk__certificate_codes__certificate_id__certificates
        FOREIGN KEY (certificate_id) REFERENCES certificates (id) ON DELETE CASCADE
);
