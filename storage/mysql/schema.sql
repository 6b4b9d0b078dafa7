-- NanoMDM MySQL schema: MySQL 8.0 or later, MariaDB 10.11 or later.
--
-- Apply to an empty database by hand (mysql DB < schema.sql), or let the
-- server do it with -storage-options migrate=1. The last statement records
-- the schema version; keep it in step with the code.
--
-- Every table uses utf8mb4 with the binary collation: identifiers compare
-- and sort bytewise, as on every other backend. Raw messages are LONGBLOB,
-- kept byte for byte (binary plists are not text). Times are DATETIME(6)
-- in the session time zone.

CREATE TABLE nano_devices (
    id                 VARCHAR(255) NOT NULL,
    identity_cert      TEXT NULL,
    serial_number      VARCHAR(127) NULL,
    authenticate       LONGBLOB NULL,
    authenticate_at    DATETIME(6) NULL,
    token_update       LONGBLOB NULL,
    token_update_at    DATETIME(6) NULL,
    unlock_token       LONGBLOB NULL,
    unlock_token_at    DATETIME(6) NULL,
    bootstrap_token    LONGBLOB NULL,
    bootstrap_token_at DATETIME(6) NULL,
    created_at         DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at         DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),

    PRIMARY KEY (id),
    KEY nano_devices_serial_number_idx (serial_number)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per user channel; id is the enrollment ID (device:user).
CREATE TABLE nano_users (
    id                          VARCHAR(255) NOT NULL,
    device_id                   VARCHAR(255) NOT NULL,
    user_short_name             VARCHAR(255) NULL,
    user_long_name              VARCHAR(255) NULL,
    token_update                LONGBLOB NULL,
    token_update_at             DATETIME(6) NULL,
    user_authenticate           LONGBLOB NULL,
    user_authenticate_at        DATETIME(6) NULL,
    user_authenticate_digest    LONGBLOB NULL,
    user_authenticate_digest_at DATETIME(6) NULL,
    created_at                  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at                  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),

    PRIMARY KEY (id),
    KEY nano_users_device_id_idx (device_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per MDM channel that sent a TokenUpdate; device_id is the
-- device channel's ID (its own ID for a device channel).
CREATE TABLE nano_enrollments (
    id                 VARCHAR(255) NOT NULL,
    device_id          VARCHAR(255) NOT NULL,
    type               VARCHAR(31) NOT NULL,
    topic              VARCHAR(255) NOT NULL,
    push_magic         VARCHAR(127) NOT NULL,
    token_hex          VARCHAR(255) NOT NULL,
    enabled            BOOLEAN NOT NULL DEFAULT TRUE,
    token_update_tally INTEGER NOT NULL DEFAULT 1,
    last_seen_at       DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    created_at         DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at         DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),

    PRIMARY KEY (id),
    KEY nano_enrollments_device_id_idx (device_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE nano_commands (
    command_uuid VARCHAR(255) NOT NULL,
    request_type VARCHAR(255) NOT NULL,
    command      LONGBLOB NOT NULL,
    created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),

    PRIMARY KEY (command_uuid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The queue: one row per command per enrollment. seq orders commands
-- enqueued at the same moment; active turns 0 when a final report arrives
-- or the queue is cleared; not_now marks a NotNow report.
CREATE TABLE nano_enrollment_queue (
    id           VARCHAR(255) NOT NULL,
    command_uuid VARCHAR(255) NOT NULL,
    active       BOOLEAN NOT NULL DEFAULT TRUE,
    not_now      BOOLEAN NOT NULL DEFAULT FALSE,
    priority     SMALLINT NOT NULL DEFAULT 0,
    seq          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),

    PRIMARY KEY (id, command_uuid),
    -- The next-command lookup reads this index in order and stops at the
    -- first row: no filesort, no scan of the enrollment's history.
    KEY nano_enrollment_queue_next_idx (id, active, priority DESC, seq),
    KEY nano_enrollment_queue_command_uuid_idx (command_uuid),
    KEY nano_enrollment_queue_seq_idx (seq),
    CONSTRAINT nano_enrollment_queue_command_fk FOREIGN KEY (command_uuid)
        REFERENCES nano_commands (command_uuid) ON DELETE CASCADE ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE nano_command_results (
    id            VARCHAR(255) NOT NULL,
    command_uuid  VARCHAR(255) NOT NULL,
    status        VARCHAR(31) NOT NULL,
    result        LONGBLOB NOT NULL,
    not_now_at    DATETIME(6) NULL,
    not_now_tally INTEGER NOT NULL DEFAULT 0,
    created_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),

    PRIMARY KEY (id, command_uuid),
    KEY nano_command_results_status_idx (status),
    -- Results of one command in enrollment order (inspection API).
    KEY nano_command_results_command_uuid_idx (command_uuid, id),
    CONSTRAINT nano_command_results_queue_fk FOREIGN KEY (id, command_uuid)
        REFERENCES nano_enrollment_queue (id, command_uuid) ON DELETE CASCADE ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE nano_push_certs (
    topic       VARCHAR(255) NOT NULL,
    cert_pem    TEXT NOT NULL,
    key_pem     TEXT NOT NULL,
    stale_token VARCHAR(64) NOT NULL,
    created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),

    PRIMARY KEY (topic)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Identity certificate hashes (lower-case hex SHA-256) by device channel.
CREATE TABLE nano_cert_auth_associations (
    id             VARCHAR(255) NOT NULL,
    sha256         CHAR(64) NOT NULL,
    cert_not_after DATETIME(6) NULL,
    created_at     DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at     DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),

    PRIMARY KEY (id, sha256),
    KEY nano_cert_auth_associations_sha256_idx (sha256)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE nano_schema_version (
    version    INTEGER NOT NULL,
    applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),

    PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT INTO nano_schema_version (version) VALUES (4);

-- One-time challenges of the embedded SCEP server (version 3): keys are
-- hashes of challenges; expires_at is Unix nanoseconds.
CREATE TABLE nano_scep_challenges (
    challenge  VARCHAR(64) NOT NULL,
    expires_at BIGINT NOT NULL,

    PRIMARY KEY (challenge),
    INDEX (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Webhook events waiting for delivery (version 4): one row per event,
-- claimed one key (device) at a time in id order; times are Unix
-- nanoseconds.
CREATE TABLE nano_outbox (
    id          BIGINT NOT NULL AUTO_INCREMENT,
    event_key   VARCHAR(255) NOT NULL,
    body        LONGBLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    owner       VARCHAR(255) NOT NULL DEFAULT '',

    PRIMARY KEY (id),
    INDEX nano_outbox_key_idx (event_key, id),
    INDEX nano_outbox_created_at_idx (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
