package mysql

import "github.com/nanomdm/nanomdm/storage/internal/sqlstore"

// challengeTable is the table of schema version 3, also in schema.sql.
const challengeTable = `CREATE TABLE nano_scep_challenges (
    challenge  VARCHAR(64) NOT NULL,
    expires_at BIGINT NOT NULL,

    PRIMARY KEY (challenge),
    INDEX (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;`

// challengeQueries list push topics and keep the SCEP server's one-time
// challenges.
var challengeQueries = sqlstore.EnrollQueries{
	UpsertChallenge: `
INSERT INTO nano_scep_challenges (challenge, expires_at) VALUES (:challenge, :expires_at)
ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)`,
	DeleteChallenge: `DELETE FROM nano_scep_challenges WHERE challenge = :challenge AND expires_at > :now`,
	PruneChallenges: `DELETE FROM nano_scep_challenges WHERE expires_at <= :now`,
}
