package mysql

import "github.com/nanomdm/nanomdm/storage/internal/sqlstore"

// queries is the MySQL text of every statement; sqlstore documents what
// each one does and which :name parameters it takes. Upserts use
// ON DUPLICATE KEY UPDATE col = VALUES(col), which MySQL 8.0 and MariaDB
// both accept (the row-alias form is MySQL-only). A report's queue update
// and last-seen time go in one multi-table UPDATE; its result follows in a
// second statement.
var queries = sqlstore.Queries{
	UpsertAuthenticate: `
INSERT INTO nano_devices (id, identity_cert, serial_number, authenticate, authenticate_at)
VALUES (:id, :identity_cert, NULLIF(:serial_number, ''), :authenticate, CURRENT_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE
    identity_cert   = VALUES(identity_cert),
    serial_number   = VALUES(serial_number),
    authenticate    = VALUES(authenticate),
    authenticate_at = VALUES(authenticate_at)`,

	DisableDevice: `
UPDATE nano_enrollments SET enabled = 0, token_update_tally = 0
WHERE device_id = :device_id`,

	SelectChannelIDs: `SELECT id FROM nano_enrollments WHERE device_id = :device_id`,

	DeactivateQueues: `
UPDATE nano_enrollment_queue SET active = 0
WHERE id IN (:ids) AND active = 1`,

	SelectQueuedCommands: `SELECT DISTINCT command_uuid FROM nano_enrollment_queue WHERE id IN (:ids)`,

	DeleteQueues: `DELETE FROM nano_enrollment_queue WHERE id IN (:ids)`,

	DeleteOrphanCommands: `
DELETE FROM nano_commands
WHERE command_uuid IN (:uuids)
  AND NOT EXISTS (
      SELECT 1 FROM nano_enrollment_queue q
      WHERE q.command_uuid = nano_commands.command_uuid)`,

	UpsertDeviceTokenUpdate: `
INSERT INTO nano_devices (id, token_update, token_update_at, unlock_token, unlock_token_at)
VALUES (:id, :token_update, CURRENT_TIMESTAMP(6), :unlock_token,
        CASE WHEN :unlock_token IS NULL THEN NULL ELSE CURRENT_TIMESTAMP(6) END)
ON DUPLICATE KEY UPDATE
    token_update    = VALUES(token_update),
    token_update_at = VALUES(token_update_at),
    unlock_token    = COALESCE(VALUES(unlock_token), unlock_token),
    unlock_token_at = COALESCE(VALUES(unlock_token_at), unlock_token_at)`,

	UpsertUserTokenUpdate: `
INSERT INTO nano_users (id, device_id, user_short_name, user_long_name, token_update, token_update_at)
VALUES (:id, :device_id, NULLIF(:user_short_name, ''), NULLIF(:user_long_name, ''), :token_update, CURRENT_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE
    device_id       = VALUES(device_id),
    user_short_name = COALESCE(VALUES(user_short_name), user_short_name),
    user_long_name  = COALESCE(VALUES(user_long_name), user_long_name),
    token_update    = VALUES(token_update),
    token_update_at = VALUES(token_update_at)`,

	UpsertEnrollment: `
INSERT INTO nano_enrollments (id, device_id, type, topic, push_magic, token_hex)
VALUES (:id, :device_id, :type, :topic, :push_magic, :token_hex)
ON DUPLICATE KEY UPDATE
    device_id          = VALUES(device_id),
    type               = VALUES(type),
    topic              = VALUES(topic),
    push_magic         = VALUES(push_magic),
    token_hex          = VALUES(token_hex),
    enabled            = 1,
    token_update_tally = token_update_tally + 1,
    last_seen_at       = CURRENT_TIMESTAMP(6)`,

	UpsertUserAuthenticate: `
INSERT INTO nano_users (id, device_id, user_short_name, user_long_name, user_authenticate, user_authenticate_at)
VALUES (:id, :device_id, NULLIF(:user_short_name, ''), NULLIF(:user_long_name, ''), :raw, CURRENT_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE
    user_authenticate    = VALUES(user_authenticate),
    user_authenticate_at = VALUES(user_authenticate_at)`,

	UpsertUserAuthenticateDigest: `
INSERT INTO nano_users (id, device_id, user_short_name, user_long_name, user_authenticate_digest, user_authenticate_digest_at)
VALUES (:id, :device_id, NULLIF(:user_short_name, ''), NULLIF(:user_long_name, ''), :raw, CURRENT_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE
    user_authenticate_digest    = VALUES(user_authenticate_digest),
    user_authenticate_digest_at = VALUES(user_authenticate_digest_at)`,

	SelectTally: `SELECT token_update_tally FROM nano_enrollments WHERE id = :id`,

	Touch: `UPDATE nano_enrollments SET last_seen_at = CURRENT_TIMESTAMP(6) WHERE id = :id`,

	ReportDone: `
UPDATE nano_enrollment_queue q
JOIN nano_enrollments e ON e.id = q.id
SET q.active = 0, e.last_seen_at = CURRENT_TIMESTAMP(6)
WHERE q.id = :id AND q.command_uuid = :uuid AND q.active = 1`,

	ReportDoneResult: `
INSERT INTO nano_command_results (id, command_uuid, status, result)
SELECT q.id, q.command_uuid, :status, :result
FROM nano_enrollment_queue q
WHERE q.id = :id AND q.command_uuid = :uuid AND q.active = 1
ON DUPLICATE KEY UPDATE
    status = VALUES(status),
    result = VALUES(result)`,

	ReportNotNow: `
UPDATE nano_enrollment_queue q
JOIN nano_enrollments e ON e.id = q.id
SET q.not_now = 1, e.last_seen_at = CURRENT_TIMESTAMP(6)
WHERE q.id = :id AND q.command_uuid = :uuid AND q.active = 1`,

	ReportNotNowResult: `
INSERT INTO nano_command_results (id, command_uuid, status, result, not_now_at, not_now_tally)
SELECT q.id, q.command_uuid, :status, :result, CURRENT_TIMESTAMP(6), 1
FROM nano_enrollment_queue q
WHERE q.id = :id AND q.command_uuid = :uuid AND q.active = 1
ON DUPLICATE KEY UPDATE
    status        = VALUES(status),
    result        = VALUES(result),
    not_now_at    = COALESCE(nano_command_results.not_now_at, VALUES(not_now_at)),
    not_now_tally = nano_command_results.not_now_tally + 1`,

	ReportDelete: `
DELETE FROM nano_enrollment_queue
WHERE id = :id AND command_uuid = :uuid AND active = 1`,

	ReportDeleteTouch: `UPDATE nano_enrollments SET last_seen_at = CURRENT_TIMESTAMP(6) WHERE id = :id`,

	NextCommand: `
SELECT c.command_uuid, c.request_type, c.command
FROM nano_enrollment_queue q
JOIN nano_commands c ON c.command_uuid = q.command_uuid
WHERE q.id = :id AND q.active = 1
ORDER BY q.priority DESC, q.seq
LIMIT 1`,

	NextCommandSkipNotNow: `
SELECT c.command_uuid, c.request_type, c.command
FROM nano_enrollment_queue q
JOIN nano_commands c ON c.command_uuid = q.command_uuid
WHERE q.id = :id AND q.active = 1 AND q.not_now = 0
ORDER BY q.priority DESC, q.seq
LIMIT 1`,

	InsertCommand: `
INSERT INTO nano_commands (command_uuid, request_type, command)
VALUES (:uuid, :request_type, :command)`,

	SelectEnrollmentIDs: `SELECT id FROM nano_enrollments WHERE id IN (:ids)`,

	InsertQueueRows: `INSERT INTO nano_enrollment_queue (id, command_uuid) VALUES :rows`,

	StoreBootstrapToken: `
UPDATE nano_devices
SET bootstrap_token = :token, bootstrap_token_at = CURRENT_TIMESTAMP(6)
WHERE id = :id`,

	SelectBootstrapToken: `SELECT bootstrap_token FROM nano_devices WHERE id = :id`,

	SelectPushInfo: `SELECT id, topic, push_magic, token_hex FROM nano_enrollments WHERE id IN (:ids)`,

	UpsertPushCert: `
INSERT INTO nano_push_certs (topic, cert_pem, key_pem, stale_token)
VALUES (:topic, :cert, :key, :stale_token)
ON DUPLICATE KEY UPDATE
    cert_pem    = VALUES(cert_pem),
    key_pem     = VALUES(key_pem),
    stale_token = VALUES(stale_token)`,

	SelectPushCert: `SELECT cert_pem, key_pem, stale_token FROM nano_push_certs WHERE topic = :topic`,

	SelectPushCertStaleToken: `SELECT stale_token FROM nano_push_certs WHERE topic = :topic`,

	SelectPushCertTopics: `SELECT topic FROM nano_push_certs`,

	HasCertHash:           `SELECT 1 FROM nano_cert_auth_associations WHERE sha256 = :sha256 LIMIT 1`,
	EnrollmentHasCertHash: `SELECT 1 FROM nano_cert_auth_associations WHERE id = :id LIMIT 1`,
	IsCertHashAssociated:  `SELECT 1 FROM nano_cert_auth_associations WHERE id = :id AND sha256 = :sha256`,

	AssociateCertHash: `
INSERT INTO nano_cert_auth_associations (id, sha256, cert_not_after)
VALUES (:id, :sha256, :not_after)
ON DUPLICATE KEY UPDATE cert_not_after = VALUES(cert_not_after)`,

	CertHashTaken:  `SELECT 1 FROM nano_cert_auth_associations WHERE sha256 = :sha256 AND id <> :id LIMIT 1`,
	LockCertHash:   `SELECT GET_LOCK(CONCAT('nanomdm.cert.', SHA1(CONCAT(DATABASE(), ':', :sha256))), 60)`,
	UnlockCertHash: `SELECT RELEASE_LOCK(CONCAT('nanomdm.cert.', SHA1(CONCAT(DATABASE(), ':', :sha256))))`,

	SelectMigration: `
SELECT d.id, 0, d.id, d.authenticate
FROM nano_devices d JOIN nano_enrollments e ON e.id = d.id
WHERE e.enabled = 1 AND d.authenticate IS NOT NULL AND d.token_update IS NOT NULL
UNION ALL
SELECT d.id, 1, d.id, d.token_update
FROM nano_devices d JOIN nano_enrollments e ON e.id = d.id
WHERE e.enabled = 1 AND d.authenticate IS NOT NULL AND d.token_update IS NOT NULL
UNION ALL
SELECT u.device_id, 2, u.id, u.token_update
FROM nano_users u
JOIN nano_enrollments ue ON ue.id = u.id
JOIN nano_enrollments de ON de.id = u.device_id
JOIN nano_devices d ON d.id = u.device_id
WHERE ue.enabled = 1 AND de.enabled = 1 AND u.token_update IS NOT NULL
  AND d.authenticate IS NOT NULL AND d.token_update IS NOT NULL
ORDER BY 1, 2, 3`,

	SelectEnrollmentIDByCertHash: `
SELECT id FROM nano_cert_auth_associations WHERE sha256 = :sha256 ORDER BY id LIMIT 1`,

	SelectFleetCounts: `
SELECT e.topic, e.type, e.enabled,
       CASE WHEN UNIX_TIMESTAMP(e.last_seen_at) * 1000000 > :seen0 THEN 0
            WHEN UNIX_TIMESTAMP(e.last_seen_at) * 1000000 > :seen1 THEN 1
            WHEN UNIX_TIMESTAMP(e.last_seen_at) * 1000000 > :seen2 THEN 2
            ELSE 3 END,
       COUNT(*)
FROM nano_enrollments e
GROUP BY 1, 2, 3, 4`,

	CountQueued: `SELECT COUNT(*) FROM nano_enrollment_queue WHERE active = 1`,

	SelectEnrollments: selectEnrollments + `
WHERE e.id > :after` + enrollmentFilters,

	SelectEnrollmentsByIDs: selectEnrollments + `
WHERE e.id > :after AND e.id IN (:ids)` + enrollmentFilters,

	SelectQueue: `
SELECT q.command_uuid, c.request_type,
       CAST(UNIX_TIMESTAMP(q.created_at) * 1000000 AS SIGNED),
       COALESCE(r.status, ''), COALESCE(r.not_now_tally, 0),
       COALESCE(CAST(UNIX_TIMESTAMP(r.not_now_at) * 1000000 AS SIGNED), 0),
       q.priority, q.seq
FROM nano_enrollment_queue q
JOIN nano_commands c ON c.command_uuid = q.command_uuid
LEFT JOIN nano_command_results r ON r.id = q.id AND r.command_uuid = q.command_uuid
WHERE q.id = :id AND q.active = 1
  AND (q.priority < :priority OR (q.priority = :priority AND q.seq > :seq))
ORDER BY q.priority DESC, q.seq
LIMIT :limit`,

	// The index hint keeps a command's pages on (command_uuid, id) even
	// when the statistics make the primary key look as cheap: with many
	// commands that would read every result after the cursor.
	SelectCommandResults: `
SELECT id, status, result FROM nano_command_results FORCE INDEX (nano_command_results_command_uuid_idx)
WHERE command_uuid = :uuid AND id > :after
ORDER BY id
LIMIT :limit`,

	SelectCommandStatuses: `
SELECT id, status FROM nano_command_results FORCE INDEX (nano_command_results_command_uuid_idx)
WHERE command_uuid = :uuid AND id > :after
ORDER BY id
LIMIT :limit`,

	SelectIdentityCert: `SELECT identity_cert FROM nano_devices WHERE id = :id`,

	SelectRecentResults: `
SELECT r.command_uuid, COALESCE(c.request_type, ''), r.status,
       CAST(UNIX_TIMESTAMP(r.updated_at) * 1000000 AS SIGNED), r.result
FROM nano_command_results r
LEFT JOIN nano_commands c ON c.command_uuid = r.command_uuid
WHERE r.id = :id
ORDER BY r.updated_at DESC, r.command_uuid
LIMIT :limit`,

	DeactivateQueued: `
UPDATE nano_enrollment_queue SET active = 0
WHERE id = :id AND command_uuid = :uuid AND active = 1`,

	DeleteQueued: `
DELETE FROM nano_enrollment_queue
WHERE id = :id AND command_uuid = :uuid AND active = 1`,
}

// selectEnrollments and enrollmentFilters frame the inspection API's
// enrollment pages. Times go out and come in as Unix microseconds:
// UNIX_TIMESTAMP reads a DATETIME in the session time zone, the one
// CURRENT_TIMESTAMP wrote it in. Each filter is off at its zero value;
// the server folds the constant test away, so a serial-number filter can
// still use the devices' serial index.
const selectEnrollments = `
SELECT e.id, e.device_id, e.type, e.enabled, COALESCE(d.serial_number, ''), e.topic,
       CAST(UNIX_TIMESTAMP(e.last_seen_at) * 1000000 AS SIGNED), e.token_update_tally,
       d.bootstrap_token IS NOT NULL
FROM nano_enrollments e
LEFT JOIN nano_devices d ON d.id = e.device_id`

const enrollmentFilters = `
  AND (:serial = '' OR d.serial_number = :serial)
  AND (:type = '' OR e.type = :type)
  AND (:enabled < 0 OR e.enabled = :enabled)
  AND (:before_us = 0 OR UNIX_TIMESTAMP(e.last_seen_at) * 1000000 < :before_us)
  AND (:after_us = 0 OR UNIX_TIMESTAMP(e.last_seen_at) * 1000000 > :after_us)
ORDER BY e.id
LIMIT :limit`

// schemaQueries manage the schema; see sqlstore.Schema.
var schemaQueries = sqlstore.Schema{
	Tables: []string{
		"nano_devices", "nano_users", "nano_enrollments", "nano_commands", "nano_enrollment_queue",
		"nano_command_results", "nano_push_certs", "nano_cert_auth_associations", "nano_schema_version",
		"nano_scep_challenges", "nano_outbox",
	},
	VersionTable: "nano_schema_version",
	CountTables: `
SELECT COUNT(*) FROM information_schema.tables
WHERE table_schema = DATABASE() AND table_name IN (:names)`,
	SelectVersion: `SELECT MAX(version) FROM nano_schema_version`,
	InsertVersion: `INSERT INTO nano_schema_version (version) VALUES (:version)`,
	// Named locks are server-wide: the name includes the database.
	Lock:   `SELECT GET_LOCK(CONCAT('nanomdm.schema.', SHA1(DATABASE())), 120)`,
	Unlock: `SELECT RELEASE_LOCK(CONCAT('nanomdm.schema.', SHA1(DATABASE())))`,
}
