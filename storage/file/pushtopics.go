package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// RetrievePushTopics implements storage.PushTopicLister: the names of
// the certificate files (ReadDir sorts them).
func (s *Storage) RetrievePushTopics(context.Context) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, pushCertsDir))
	if err != nil {
		return nil, fmt.Errorf("listing push certificates: %w", err)
	}
	topics := []string{}
	for _, e := range entries {
		if topic, ok := strings.CutSuffix(e.Name(), ".pem"); ok && !strings.HasPrefix(e.Name(), tempPrefix) {
			topics = append(topics, topic)
		}
	}
	return topics, nil
}
