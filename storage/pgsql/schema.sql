-- NanoMDM PostgreSQL schema (PostgreSQL 12 or later).
--
-- Apply to an empty database by hand (psql -f schema.sql), or let the
-- server do it with -storage-options migrate=1. The last statement records
-- the schema version; keep it in step with the code.
--
-- Identifiers use the "C" collation: compared and ordered bytewise, the
-- same on every server whatever its locale. Raw messages are BYTEA, kept
-- byte for byte (binary plists are not text).

CREATE TABLE devices (
    id                 VARCHAR(255) COLLATE "C" NOT NULL,
    identity_cert      TEXT NULL,
    serial_number      VARCHAR(127) NULL,
    authenticate       BYTEA NULL,
    authenticate_at    TIMESTAMPTZ NULL,
    token_update       BYTEA NULL,
    token_update_at    TIMESTAMPTZ NULL,
    unlock_token       BYTEA NULL,
    unlock_token_at    TIMESTAMPTZ NULL,
    bootstrap_token    BYTEA NULL,
    bootstrap_token_at TIMESTAMPTZ NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (id)
);

CREATE INDEX devices_serial_number_idx ON devices (serial_number);

-- One row per user channel; id is the enrollment ID (device:user).
CREATE TABLE users (
    id                       VARCHAR(255) COLLATE "C" NOT NULL,
    device_id                VARCHAR(255) COLLATE "C" NOT NULL,
    user_short_name          VARCHAR(255) NULL,
    user_long_name           VARCHAR(255) NULL,
    token_update             BYTEA NULL,
    token_update_at          TIMESTAMPTZ NULL,
    user_authenticate        BYTEA NULL,
    user_authenticate_at     TIMESTAMPTZ NULL,
    user_authenticate_digest BYTEA NULL,
    user_authenticate_digest_at TIMESTAMPTZ NULL,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (id)
);

CREATE INDEX users_device_id_idx ON users (device_id);

-- One row per MDM channel that sent a TokenUpdate; device_id is the
-- device channel's ID (its own ID for a device channel).
CREATE TABLE enrollments (
    id                 VARCHAR(255) COLLATE "C" NOT NULL,
    device_id          VARCHAR(255) COLLATE "C" NOT NULL,
    type               VARCHAR(31) NOT NULL,
    topic              VARCHAR(255) NOT NULL,
    push_magic         VARCHAR(127) NOT NULL,
    token_hex          VARCHAR(255) NOT NULL,
    enabled            BOOLEAN NOT NULL DEFAULT TRUE,
    token_update_tally INTEGER NOT NULL DEFAULT 1,
    last_seen_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (id)
);

CREATE INDEX enrollments_device_id_idx ON enrollments (device_id);

CREATE TABLE commands (
    command_uuid VARCHAR(255) COLLATE "C" NOT NULL,
    request_type VARCHAR(255) NOT NULL,
    command      BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (command_uuid)
);

-- The queue: one row per command per enrollment. seq orders commands
-- enqueued at the same moment; active turns false when a final report
-- arrives or the queue is cleared; not_now marks a NotNow report.
CREATE TABLE enrollment_queue (
    id           VARCHAR(255) COLLATE "C" NOT NULL,
    command_uuid VARCHAR(255) COLLATE "C" NOT NULL,
    active       BOOLEAN NOT NULL DEFAULT TRUE,
    not_now      BOOLEAN NOT NULL DEFAULT FALSE,
    priority     SMALLINT NOT NULL DEFAULT 0,
    seq          BIGSERIAL NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (id, command_uuid),
    FOREIGN KEY (command_uuid) REFERENCES commands (command_uuid)
        ON DELETE CASCADE ON UPDATE CASCADE
);

-- The next-command lookup reads this index in order and stops at the
-- first row: no sort, no scan of the enrollment's history.
CREATE INDEX enrollment_queue_next_idx
    ON enrollment_queue (id, active, priority DESC, seq);
CREATE INDEX enrollment_queue_command_uuid_idx
    ON enrollment_queue (command_uuid);

CREATE TABLE command_results (
    id            VARCHAR(255) COLLATE "C" NOT NULL,
    command_uuid  VARCHAR(255) COLLATE "C" NOT NULL,
    status        VARCHAR(31) NOT NULL,
    result        BYTEA NOT NULL,
    not_now_at    TIMESTAMPTZ NULL,
    not_now_tally INTEGER NOT NULL DEFAULT 0,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (id, command_uuid),
    FOREIGN KEY (id, command_uuid) REFERENCES enrollment_queue (id, command_uuid)
        ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE INDEX command_results_status_idx ON command_results (status);
-- Results of one command in enrollment order (inspection API).
CREATE INDEX command_results_command_uuid_idx ON command_results (command_uuid, id);

CREATE TABLE push_certs (
    topic       VARCHAR(255) COLLATE "C" NOT NULL,
    cert_pem    TEXT NOT NULL,
    key_pem     TEXT NOT NULL,
    stale_token VARCHAR(64) NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (topic)
);

-- Identity certificate hashes (lower-case hex SHA-256) by device channel.
CREATE TABLE cert_auth_associations (
    id             VARCHAR(255) COLLATE "C" NOT NULL,
    sha256         CHAR(64) COLLATE "C" NOT NULL,
    cert_not_after TIMESTAMPTZ NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (id, sha256)
);

CREATE INDEX cert_auth_associations_sha256_idx ON cert_auth_associations (sha256);

CREATE TABLE schema_version (
    version    INTEGER NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),

    PRIMARY KEY (version)
);

INSERT INTO schema_version (version) VALUES (4);

-- One-time challenges of the embedded SCEP server (version 3): keys are
-- hashes of challenges; expires_at is Unix nanoseconds.
CREATE TABLE scep_challenges (
    challenge  VARCHAR(64) COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL,

    PRIMARY KEY (challenge)
);

CREATE INDEX scep_challenges_expires_at_idx ON scep_challenges (expires_at);

-- Webhook events waiting for delivery (version 4): one row per event,
-- claimed one key (device) at a time in id order; times are Unix
-- nanoseconds.
CREATE TABLE outbox (
    id          BIGSERIAL NOT NULL,
    event_key   VARCHAR(255) COLLATE "C" NOT NULL,
    body        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    owner       VARCHAR(255) NOT NULL DEFAULT '',

    PRIMARY KEY (id)
);

CREATE INDEX outbox_key_idx ON outbox (event_key, id);
CREATE INDEX outbox_created_at_idx ON outbox (created_at);
