package pgsql

import "github.com/nanomdm/nanomdm/storage/internal/sqlstore"

// outboxTable is the table of schema version 4, also in schema.sql.
const outboxTable = `CREATE TABLE outbox (
    id          BIGSERIAL NOT NULL,
    event_key   VARCHAR(255) COLLATE "C" NOT NULL,
    body        BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    lease_until BIGINT NOT NULL DEFAULT 0,
    owner       VARCHAR(255) NOT NULL DEFAULT '',

    PRIMARY KEY (id)
);

CREATE INDEX outbox_key_idx ON outbox (event_key, id);
CREATE INDEX outbox_created_at_idx ON outbox (created_at);`

// outboxQueries keep the webhook outbox. The claim reads the primary key
// in order and probes the key index for an older event of the same key.
var outboxQueries = sqlstore.OutboxQueries{
	Insert: `INSERT INTO outbox (event_key, body, created_at) VALUES :rows`,
	ClaimHeads: `
SELECT o.id, o.event_key, o.body, o.created_at FROM outbox o
WHERE o.lease_until < :now
  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.event_key = o.event_key AND p.id < o.id)
ORDER BY o.id
LIMIT :n
FOR UPDATE OF o SKIP LOCKED`,
	Lease:        `UPDATE outbox SET owner = :owner, lease_until = :until WHERE id IN (:ids)`,
	Delete:       `DELETE FROM outbox WHERE id IN (:ids)`,
	Release:      `UPDATE outbox SET owner = '', lease_until = :retry_at WHERE id IN (:ids) AND owner = :owner`,
	DeleteBefore: `DELETE FROM outbox WHERE created_at < :before`,
	NthID:        `SELECT id FROM outbox ORDER BY id LIMIT 1 OFFSET :offset`,
	DeleteUpTo:   `DELETE FROM outbox WHERE id <= :id`,
	Stats:        `SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM outbox`,
}
