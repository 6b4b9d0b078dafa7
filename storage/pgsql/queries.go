package pgsql

import "github.com/nanomdm/nanomdm/storage/internal/sqlstore"

// queries is the PostgreSQL text of every statement; sqlstore documents
// what each one does and which :name parameters it takes. Data-modifying
// WITH clauses let one statement take a command off the queue, store its
// result and set the last-seen time: one round trip, one atomic step.
var queries = sqlstore.Queries{
	UpsertAuthenticate: `
INSERT INTO devices (id, identity_cert, serial_number, authenticate, authenticate_at)
VALUES (:id, :identity_cert, NULLIF(:serial_number, ''), :authenticate, now())
ON CONFLICT (id) DO UPDATE SET
    identity_cert   = EXCLUDED.identity_cert,
    serial_number   = EXCLUDED.serial_number,
    authenticate    = EXCLUDED.authenticate,
    authenticate_at = EXCLUDED.authenticate_at,
    updated_at      = now()`,

	DisableDevice: `
UPDATE enrollments
SET enabled = FALSE, token_update_tally = 0, updated_at = now()
WHERE device_id = :device_id`,

	SelectChannelIDs: `SELECT id FROM enrollments WHERE device_id = :device_id`,

	DeactivateQueues: `
UPDATE enrollment_queue SET active = FALSE, updated_at = now()
WHERE id IN (:ids) AND active`,

	SelectQueuedCommands: `SELECT DISTINCT command_uuid FROM enrollment_queue WHERE id IN (:ids)`,

	DeleteQueues: `DELETE FROM enrollment_queue WHERE id IN (:ids)`,

	DeleteOrphanCommands: `
DELETE FROM commands c
WHERE c.command_uuid IN (:uuids)
  AND NOT EXISTS (SELECT 1 FROM enrollment_queue q WHERE q.command_uuid = c.command_uuid)`,

	UpsertDeviceTokenUpdate: `
INSERT INTO devices (id, token_update, token_update_at, unlock_token, unlock_token_at)
VALUES (:id, :token_update, now(), CAST(:unlock_token AS BYTEA),
        CASE WHEN CAST(:unlock_token AS BYTEA) IS NULL THEN NULL ELSE now() END)
ON CONFLICT (id) DO UPDATE SET
    token_update    = EXCLUDED.token_update,
    token_update_at = EXCLUDED.token_update_at,
    unlock_token    = COALESCE(EXCLUDED.unlock_token, devices.unlock_token),
    unlock_token_at = COALESCE(EXCLUDED.unlock_token_at, devices.unlock_token_at),
    updated_at      = now()`,

	UpsertUserTokenUpdate: `
INSERT INTO users (id, device_id, user_short_name, user_long_name, token_update, token_update_at)
VALUES (:id, :device_id, NULLIF(:user_short_name, ''), NULLIF(:user_long_name, ''), :token_update, now())
ON CONFLICT (id) DO UPDATE SET
    device_id       = EXCLUDED.device_id,
    user_short_name = COALESCE(EXCLUDED.user_short_name, users.user_short_name),
    user_long_name  = COALESCE(EXCLUDED.user_long_name, users.user_long_name),
    token_update    = EXCLUDED.token_update,
    token_update_at = EXCLUDED.token_update_at,
    updated_at      = now()`,

	UpsertEnrollment: `
INSERT INTO enrollments (id, device_id, type, topic, push_magic, token_hex)
VALUES (:id, :device_id, :type, :topic, :push_magic, :token_hex)
ON CONFLICT (id) DO UPDATE SET
    device_id          = EXCLUDED.device_id,
    type               = EXCLUDED.type,
    topic              = EXCLUDED.topic,
    push_magic         = EXCLUDED.push_magic,
    token_hex          = EXCLUDED.token_hex,
    enabled            = TRUE,
    token_update_tally = enrollments.token_update_tally + 1,
    last_seen_at       = now(),
    updated_at         = now()`,

	UpsertUserAuthenticate: `
INSERT INTO users (id, device_id, user_short_name, user_long_name, user_authenticate, user_authenticate_at)
VALUES (:id, :device_id, NULLIF(:user_short_name, ''), NULLIF(:user_long_name, ''), :raw, now())
ON CONFLICT (id) DO UPDATE SET
    user_authenticate    = EXCLUDED.user_authenticate,
    user_authenticate_at = EXCLUDED.user_authenticate_at,
    updated_at           = now()`,

	UpsertUserAuthenticateDigest: `
INSERT INTO users (id, device_id, user_short_name, user_long_name, user_authenticate_digest, user_authenticate_digest_at)
VALUES (:id, :device_id, NULLIF(:user_short_name, ''), NULLIF(:user_long_name, ''), :raw, now())
ON CONFLICT (id) DO UPDATE SET
    user_authenticate_digest    = EXCLUDED.user_authenticate_digest,
    user_authenticate_digest_at = EXCLUDED.user_authenticate_digest_at,
    updated_at                  = now()`,

	SelectTally: `SELECT token_update_tally FROM enrollments WHERE id = :id`,

	Touch: `UPDATE enrollments SET last_seen_at = now() WHERE id = :id`,

	ReportDone: `
WITH q AS (
    UPDATE enrollment_queue SET active = FALSE, updated_at = now()
    WHERE id = :id AND command_uuid = :uuid AND active
    RETURNING id, command_uuid
), r AS (
    INSERT INTO command_results (id, command_uuid, status, result)
    SELECT id, command_uuid, CAST(:status AS VARCHAR), CAST(:result AS BYTEA) FROM q
    ON CONFLICT (id, command_uuid) DO UPDATE SET
        status     = EXCLUDED.status,
        result     = EXCLUDED.result,
        updated_at = now()
)
UPDATE enrollments SET last_seen_at = now()
WHERE id = :id AND EXISTS (SELECT 1 FROM q)`,

	ReportNotNow: `
WITH q AS (
    UPDATE enrollment_queue SET not_now = TRUE, updated_at = now()
    WHERE id = :id AND command_uuid = :uuid AND active
    RETURNING id, command_uuid
), r AS (
    INSERT INTO command_results (id, command_uuid, status, result, not_now_at, not_now_tally)
    SELECT id, command_uuid, CAST(:status AS VARCHAR), CAST(:result AS BYTEA), now(), 1 FROM q
    ON CONFLICT (id, command_uuid) DO UPDATE SET
        status        = EXCLUDED.status,
        result        = EXCLUDED.result,
        not_now_at    = COALESCE(command_results.not_now_at, EXCLUDED.not_now_at),
        not_now_tally = command_results.not_now_tally + 1,
        updated_at    = now()
)
UPDATE enrollments SET last_seen_at = now()
WHERE id = :id AND EXISTS (SELECT 1 FROM q)`,

	ReportDelete: `
WITH q AS (
    DELETE FROM enrollment_queue
    WHERE id = :id AND command_uuid = :uuid AND active
    RETURNING id
)
UPDATE enrollments SET last_seen_at = now()
WHERE id = :id AND EXISTS (SELECT 1 FROM q)`,

	NextCommand: `
SELECT c.command_uuid, c.request_type, c.command
FROM enrollment_queue q
JOIN commands c ON c.command_uuid = q.command_uuid
WHERE q.id = :id AND q.active
ORDER BY q.priority DESC, q.seq
LIMIT 1`,

	NextCommandSkipNotNow: `
SELECT c.command_uuid, c.request_type, c.command
FROM enrollment_queue q
JOIN commands c ON c.command_uuid = q.command_uuid
WHERE q.id = :id AND q.active AND NOT q.not_now
ORDER BY q.priority DESC, q.seq
LIMIT 1`,

	InsertCommand: `
INSERT INTO commands (command_uuid, request_type, command)
VALUES (:uuid, :request_type, :command)`,

	SelectEnrollmentIDs: `SELECT id FROM enrollments WHERE id IN (:ids)`,

	InsertQueueRows: `INSERT INTO enrollment_queue (id, command_uuid) VALUES :rows`,
	QueueForEnrollments: `INSERT INTO enrollment_queue (id, command_uuid)
		SELECT id, :uuid FROM enrollments WHERE id IN (:ids) RETURNING id`,

	StoreBootstrapToken: `
UPDATE devices
SET bootstrap_token = :token, bootstrap_token_at = now(), updated_at = now()
WHERE id = :id`,

	SelectBootstrapToken: `SELECT bootstrap_token FROM devices WHERE id = :id`,

	SelectPushInfo: `SELECT id, topic, push_magic, token_hex FROM enrollments WHERE id IN (:ids)`,

	UpsertPushCert: `
INSERT INTO push_certs (topic, cert_pem, key_pem, stale_token)
VALUES (:topic, :cert, :key, :stale_token)
ON CONFLICT (topic) DO UPDATE SET
    cert_pem    = EXCLUDED.cert_pem,
    key_pem     = EXCLUDED.key_pem,
    stale_token = EXCLUDED.stale_token,
    updated_at  = now()`,

	SelectPushCert: `SELECT cert_pem, key_pem, stale_token FROM push_certs WHERE topic = :topic`,

	SelectPushCertStaleToken: `SELECT stale_token FROM push_certs WHERE topic = :topic`,

	SelectPushCertTopics: `SELECT topic FROM push_certs`,

	HasCertHash:           `SELECT 1 FROM cert_auth_associations WHERE sha256 = :sha256 LIMIT 1`,
	EnrollmentHasCertHash: `SELECT 1 FROM cert_auth_associations WHERE id = :id LIMIT 1`,
	IsCertHashAssociated:  `SELECT 1 FROM cert_auth_associations WHERE id = :id AND sha256 = :sha256`,

	AssociateCertHash: `
INSERT INTO cert_auth_associations (id, sha256, cert_not_after)
VALUES (:id, :sha256, :not_after)
ON CONFLICT (id, sha256) DO UPDATE SET
    cert_not_after = EXCLUDED.cert_not_after,
    updated_at     = now()`,

	CertHashTaken: `SELECT 1 FROM cert_auth_associations WHERE sha256 = :sha256 AND id <> :id LIMIT 1`,
	// A transaction lock, released at commit (see Migrate's lock).
	LockCertHash: `SELECT 1 FROM pg_advisory_xact_lock(740661, hashtext(:sha256))`,

	SelectMigration: `
SELECT d.id, 0, d.id, d.authenticate
FROM devices d JOIN enrollments e ON e.id = d.id
WHERE e.enabled AND d.authenticate IS NOT NULL AND d.token_update IS NOT NULL
UNION ALL
SELECT d.id, 1, d.id, d.token_update
FROM devices d JOIN enrollments e ON e.id = d.id
WHERE e.enabled AND d.authenticate IS NOT NULL AND d.token_update IS NOT NULL
UNION ALL
SELECT u.device_id, 2, u.id, u.token_update
FROM users u
JOIN enrollments ue ON ue.id = u.id
JOIN enrollments de ON de.id = u.device_id
JOIN devices d ON d.id = u.device_id
WHERE ue.enabled AND de.enabled AND u.token_update IS NOT NULL
  AND d.authenticate IS NOT NULL AND d.token_update IS NOT NULL
ORDER BY 1, 2, 3`,

	SelectEnrollmentIDByCertHash: `
SELECT id FROM cert_auth_associations WHERE sha256 = :sha256 ORDER BY id LIMIT 1`,

	SelectFleetCounts: `
SELECT e.topic, e.type, e.enabled,
       CASE WHEN e.last_seen_at > TIMESTAMPTZ 'epoch' + CAST(:seen0 AS BIGINT) * INTERVAL '1 microsecond' THEN 0
            WHEN e.last_seen_at > TIMESTAMPTZ 'epoch' + CAST(:seen1 AS BIGINT) * INTERVAL '1 microsecond' THEN 1
            WHEN e.last_seen_at > TIMESTAMPTZ 'epoch' + CAST(:seen2 AS BIGINT) * INTERVAL '1 microsecond' THEN 2
            ELSE 3 END,
       COUNT(*)
FROM enrollments e
GROUP BY 1, 2, 3, 4`,

	CountQueued: `SELECT COUNT(*) FROM enrollment_queue WHERE active`,

	SelectEnrollments: selectEnrollments + `
WHERE e.id > CAST(:after AS VARCHAR)` + enrollmentFilters,

	SelectEnrollmentsByIDs: selectEnrollments + `
WHERE e.id > CAST(:after AS VARCHAR) AND e.id IN (:ids)` + enrollmentFilters,

	SelectQueue: `
SELECT q.command_uuid, c.request_type,
       CAST(EXTRACT(EPOCH FROM q.created_at) * 1000000 AS BIGINT),
       COALESCE(r.status, ''), COALESCE(r.not_now_tally, 0),
       COALESCE(CAST(EXTRACT(EPOCH FROM r.not_now_at) * 1000000 AS BIGINT), 0),
       q.priority, q.seq
FROM enrollment_queue q
JOIN commands c ON c.command_uuid = q.command_uuid
LEFT JOIN command_results r ON r.id = q.id AND r.command_uuid = q.command_uuid
WHERE q.id = :id AND q.active
  AND (q.priority < CAST(:priority AS INTEGER)
       OR (q.priority = CAST(:priority AS INTEGER) AND q.seq > CAST(:seq AS BIGINT)))
ORDER BY q.priority DESC, q.seq
LIMIT :limit`,

	SelectCommandResults: `
SELECT id, status, result FROM command_results
WHERE command_uuid = :uuid AND id > CAST(:after AS VARCHAR)
ORDER BY id
LIMIT :limit`,

	SelectCommandStatuses: `
SELECT id, status FROM command_results
WHERE command_uuid = :uuid AND id > CAST(:after AS VARCHAR)
ORDER BY id
LIMIT :limit`,

	SelectIdentityCert: `SELECT identity_cert FROM devices WHERE id = :id`,

	SelectRecentResults: `
SELECT r.command_uuid, COALESCE(c.request_type, ''), r.status,
       CAST(EXTRACT(EPOCH FROM r.updated_at) * 1000000 AS BIGINT), r.result
FROM command_results r
LEFT JOIN commands c ON c.command_uuid = r.command_uuid
WHERE r.id = :id
ORDER BY r.updated_at DESC, r.command_uuid
LIMIT :limit`,

	DeactivateQueued: `
UPDATE enrollment_queue SET active = FALSE, updated_at = now()
WHERE id = :id AND command_uuid = :uuid AND active`,

	DeleteQueued: `
DELETE FROM enrollment_queue
WHERE id = :id AND command_uuid = :uuid AND active`,
}

// selectEnrollments and enrollmentFilters frame the inspection API's
// enrollment pages. Times go out and come in as Unix microseconds. Each
// filter is off at its zero value; the planner sees the parameter values
// (lib/pq plans each unnamed statement with them) and folds the constant
// test away.
const selectEnrollments = `
SELECT e.id, e.device_id, e.type, e.enabled, COALESCE(d.serial_number, ''), e.topic,
       CAST(EXTRACT(EPOCH FROM e.last_seen_at) * 1000000 AS BIGINT), e.token_update_tally,
       d.bootstrap_token IS NOT NULL
FROM enrollments e
LEFT JOIN devices d ON d.id = e.device_id`

const enrollmentFilters = `
  AND (CAST(:serial AS VARCHAR) = '' OR d.serial_number = CAST(:serial AS VARCHAR))
  AND (CAST(:type AS VARCHAR) = '' OR e.type = CAST(:type AS VARCHAR))
  AND (CAST(:enabled AS INTEGER) < 0 OR e.enabled = (CAST(:enabled AS INTEGER) = 1))
  AND (CAST(:before_us AS BIGINT) = 0
       OR e.last_seen_at < TIMESTAMPTZ 'epoch' + CAST(:before_us AS BIGINT) * INTERVAL '1 microsecond')
  AND (CAST(:after_us AS BIGINT) = 0
       OR e.last_seen_at > TIMESTAMPTZ 'epoch' + CAST(:after_us AS BIGINT) * INTERVAL '1 microsecond')
ORDER BY e.id
LIMIT :limit`

// schemaQueries manage the schema; see sqlstore.Schema.
var schemaQueries = sqlstore.Schema{
	Tables: []string{
		"devices", "users", "enrollments", "commands", "enrollment_queue",
		"command_results", "push_certs", "cert_auth_associations", "schema_version",
		"scep_challenges", "outbox",
	},
	VersionTable:     "schema_version",
	TransactionalDDL: true,
	CountTables: `
SELECT count(*) FROM information_schema.tables
WHERE table_schema = current_schema() AND table_name IN (:names)`,
	SelectVersion: `SELECT max(version) FROM schema_version`,
	InsertVersion: `INSERT INTO schema_version (version) VALUES (:version)`,
	// An advisory lock is per database; the key is arbitrary but fixed.
	// A transaction lock: a session lock would stay with whichever server
	// connection a pooler in transaction mode gave the statement.
	Lock: `SELECT 1 FROM pg_advisory_xact_lock(7406611829)`,
}
