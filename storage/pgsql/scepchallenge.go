package pgsql

import "github.com/nanomdm/nanomdm/storage/internal/sqlstore"

// challengeTable is the table of schema version 3, also in schema.sql.
const challengeTable = `CREATE TABLE scep_challenges (
    challenge  VARCHAR(64) COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL,

    PRIMARY KEY (challenge)
);

CREATE INDEX scep_challenges_expires_at_idx ON scep_challenges (expires_at);`

// challengeQueries list push topics and keep the SCEP server's one-time
// challenges.
var challengeQueries = sqlstore.EnrollQueries{
	UpsertChallenge: `
INSERT INTO scep_challenges (challenge, expires_at) VALUES (:challenge, :expires_at)
ON CONFLICT (challenge) DO UPDATE SET expires_at = EXCLUDED.expires_at`,
	DeleteChallenge: `DELETE FROM scep_challenges WHERE challenge = :challenge AND expires_at > :now`,
	PruneChallenges: `DELETE FROM scep_challenges WHERE expires_at <= :now`,
}
