package mysql

import "github.com/nanomdm/nanomdm/storage/internal/sqlstore"

// outboxTable is the table of schema version 4, also in schema.sql.
const outboxTable = `CREATE TABLE nano_outbox (
    id          BIGINT NOT NULL AUTO_INCREMENT,
    event_key   VARCHAR(255) NOT NULL,
    body        LONGBLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    owner       VARCHAR(255) NOT NULL DEFAULT '',

    PRIMARY KEY (id),
    INDEX nano_outbox_key_idx (event_key, id),
    INDEX nano_outbox_created_at_idx (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;`

// outboxQueries keep the webhook outbox. The claim reads the primary key
// in order and probes the key index for an older event of the same key.
var outboxQueries = sqlstore.OutboxQueries{
	Insert: `INSERT INTO nano_outbox (event_key, body, created_at) VALUES :rows`,
	ClaimHeads: `
SELECT o.id, o.event_key, o.body, o.created_at FROM nano_outbox o
WHERE o.lease_until < :now
  AND NOT EXISTS (SELECT 1 FROM nano_outbox p WHERE p.event_key = o.event_key AND p.id < o.id)
ORDER BY o.id
LIMIT :n
FOR UPDATE SKIP LOCKED`,
	Lease:        `UPDATE nano_outbox SET owner = :owner, lease_until = :until WHERE id IN (:ids)`,
	Delete:       `DELETE FROM nano_outbox WHERE id IN (:ids)`,
	Release:      `UPDATE nano_outbox SET owner = '', lease_until = :retry_at WHERE id IN (:ids) AND owner = :owner`,
	DeleteBefore: `DELETE FROM nano_outbox WHERE created_at < :before`,
	NthID:        `SELECT id FROM nano_outbox ORDER BY id LIMIT 1 OFFSET :offset`,
	DeleteUpTo:   `DELETE FROM nano_outbox WHERE id <= :id`,
	Stats:        `SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM nano_outbox`,
}
