package mesh

import (
	"context"
	"fmt"
)

// Pub-sub on the default node (see Node.Subscribe and the package doc).
// Before Setup they fail with ErrNotSetup.

// Subscribe subscribes h to a topic pattern on the default node.
func Subscribe(pattern string, h func(m *Message)) (*Subscription, error) {
	if n := Default(); n != nil {
		return n.Subscribe(pattern, h)
	}
	return nil, ErrNotSetup
}

// QueueSubscribe subscribes h to a topic pattern in a queue group on the
// default node.
func QueueSubscribe(pattern, group string, h func(m *Message)) (*Subscription, error) {
	if n := Default(); n != nil {
		return n.QueueSubscribe(pattern, group, h)
	}
	return nil, ErrNotSetup
}

// Publish publishes from the default node.
func Publish(ctx context.Context, topic string, payload []byte) error {
	if n := Default(); n != nil {
		return n.Publish(ctx, topic, payload)
	}
	return errNotSetupSend
}

// Request sends a request to one subscriber of topic from the default node.
func Request(ctx context.Context, topic string, payload []byte) ([]byte, error) {
	if n := Default(); n != nil {
		return n.Request(ctx, topic, payload)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnhealthy, ErrNotSetup)
}
