// Package storagetest is the contract suite every storage backend passes,
// in the spirit of testing/fstest.TestFS: Run drives a store through each
// behaviour the storage interfaces document, with have/want messages.
//
// Run works for backends that hand every subtest a fresh store and for
// those that share one database between subtests: each subtest uses its
// own random enrollment IDs, CommandUUIDs and push topics, and reads of
// global data (such as the migration output) look only at its own IDs.
//
// The package also exports the builders the suite uses (Channel, NewDevice,
// NewCommand, NewPushCert, EncodeBinaryPlist …) for other tests.
package storagetest

import (
	"testing"

	"github.com/nanomdm/nanomdm/storage"
)

// Options describe deliberate differences of a store under test.
type Options struct {
	// DiscardsResults is set for a store that deletes finished commands
	// and their results (the SQL backends' delete=1): it keeps NotNow
	// results only.
	DiscardsResults bool
}

// Run runs the contract suite. newStore is called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) storage.AllStorage) {
	RunWith(t, newStore, Options{})
}

// RunWith runs the contract suite on a store configured as opts says.
func RunWith(t *testing.T, newStore func(t *testing.T) storage.AllStorage, opts Options) {
	cases := []struct {
		name string
		test func(t *testing.T, s storage.AllStorage)
	}{
		{"EnrollAndTally", testEnrollAndTally},
		{"UnknownEnrollmentEmpty", testUnknownEnrollmentEmpty},
		{"EnqueueToUnknownEnrollment", testEnqueueToUnknownEnrollment},
		{"NothingEnqueuedStoresNothing", testNothingEnqueuedStoresNothing},
		{"FIFOWithinMillisecond", testFIFO},
		{"ReportRemovesCommand", testReportRemovesCommand},
		{"IdleStoresNothing", testIdleStoresNothing},
		{"NotNow", testNotNow},
		{"AuthenticateClearsQueues", testAuthenticateClearsQueues},
		{"ClearQueue", testClearQueue},
		{"UserChannelQueues", testUserChannelQueues},
		{"UnknownCommandReport", testUnknownCommandReport},
		{"EnqueueToManyIDs", testEnqueueToManyIDs},
		{"DuplicateCommandUUID", testDuplicateCommandUUID},
		{"RetrievePushInfo", testRetrievePushInfo},
		{"ConcurrentEnqueue", testConcurrentEnqueue},
		{"ConcurrentCommandLoop", testConcurrentCommandLoop},
		{"BootstrapToken", testBootstrapToken},
		{"UserAuthenticate", testUserAuthenticate},
		{"Disable", testDisable},
		{"PushCert", testPushCert},
		{"PushCertTopics", testPushCertTopics},
		{"CertAuth", testCertAuth},
		{"CertAuthRace", testCertAuthRace},
		{"Migration", testMigration},
		{"InvalidIDs", testInvalidIDs},
		{"EdgeCases", testEdgeCases},
		{"CertHashOwner", testCertHashOwner},
		{"Ping", testPing},
		{"SCEPChallenges", testSCEPChallenges},
		{"OutboxOrder", testOutboxOrder},
		{"OutboxLease", testOutboxLease},
		{"OutboxClaimExclusive", testOutboxClaimExclusive},
		{"OutboxTrim", testOutboxTrim},
		{"ListEnrollments", testListEnrollments},
		{"ListQueue", testListQueue},
		{"FleetCounts", testFleetCounts},
		{"CommandResults", func(t *testing.T, s storage.AllStorage) { testCommandResults(t, s, opts.DiscardsResults) }},
		{"IdentityCert", testIdentityCert},
		{"RecentResults", func(t *testing.T, s storage.AllStorage) { testRecentResults(t, s, opts.DiscardsResults) }},
		{"RemoveQueuedCommand", testRemoveQueuedCommand},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.test(t, newStore(t))
		})
	}
}
