-- Institutions (the tenants) and their API tokens. Only a SHA-256 of a token is kept.

CREATE TABLE institutions (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    uuid             uuid        NOT NULL DEFAULT gen_random_uuid(),
    name             text        NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    email            text        NOT NULL CHECK (length(email) BETWEEN 3 AND 255),
    phone_number     text,
    address          text,
    contact_person   text,
    website          text,
    social_links     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    latitude         double precision,
    longitude        double precision,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pk__institutions PRIMARY KEY (id),
    CONSTRAINT uq__institutions__uuid UNIQUE (uuid)
);

CREATE TABLE api_tokens (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    uuid             uuid        NOT NULL DEFAULT gen_random_uuid(),
    institution_id   bigint      NOT NULL,
    name             text        NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    token_hash       bytea       NOT NULL CHECK (length(token_hash) = 32),
    -- the first characters of the token, shown in listings so an operator can tell tokens apart
    token_prefix     text        NOT NULL,
    permissions      text[]      NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at     timestamptz,
    revoked_at       timestamptz,
    CONSTRAINT pk__api_tokens PRIMARY KEY (id),
    CONSTRAINT uq__api_tokens__uuid UNIQUE (uuid),
    CONSTRAINT uq__api_tokens__token_hash UNIQUE (token_hash),
    CONSTRAINT fk__api_tokens__institution_id__institutions
        FOREIGN KEY (institution_id) REFERENCES institutions (id) ON DELETE CASCADE
);

CREATE INDEX ix__api_tokens__institution_id ON api_tokens (institution_id);
