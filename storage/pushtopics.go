package storage

import "context"

// PushTopicLister lists the topics of the stored push certificates, for
// the enrollment profile, which names the topic devices subscribe to.
type PushTopicLister interface {
	// RetrievePushTopics returns the topic of every stored push
	// certificate in bytewise order; none is an empty result, not an
	// error.
	RetrievePushTopics(ctx context.Context) ([]string, error)
}
