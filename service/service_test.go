package service_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/service"
)

// tagging is a decorator written against the one-method interface: it
// notes the message type, then hands the message on unchanged.
func tagging(seen *[]string, next service.Checkin) service.Checkin {
	return service.CheckinFunc(func(r *mdm.Request, msg any) ([]byte, error) {
		*seen = append(*seen, mdm.MessageTypeOf(msg))
		return next.Checkin(r, msg)
	})
}

// TestCheckinFunc checks that a function is a Checkin and that links made
// of CheckinFunc compose: the message reaches the end of the chain as it
// was sent, and the answer and error come back unchanged.
func TestCheckinFunc(t *testing.T) {
	t.Parallel()
	errEnd := errors.New("end of chain")
	var got any
	end := service.CheckinFunc(func(_ *mdm.Request, msg any) ([]byte, error) {
		got = msg
		return []byte("answer"), errEnd
	})
	var seen []string
	chain := tagging(&seen, tagging(&seen, end))
	msg := &mdm.TokenUpdate{}
	body, err := chain.Checkin(&mdm.Request{Context: context.Background()}, msg)
	if string(body) != "answer" || !errors.Is(err, errEnd) || got != msg {
		t.Errorf("have body %q, error %v, message %v; want the end's answer and error for the message sent", body, err, got)
	}
	if want := []string{mdm.MessageTokenUpdate, mdm.MessageTokenUpdate}; !slices.Equal(seen, want) {
		t.Errorf("links saw %q, want %q", seen, want)
	}
}

func TestUnrecognizedCheckin(t *testing.T) {
	t.Parallel()
	err := service.UnrecognizedCheckin(&mdm.CommandResults{})
	if !errors.Is(err, mdm.ErrUnrecognizedMessageType) || err.Error() != "unrecognized MessageType: check-in of type *mdm.CommandResults" {
		t.Errorf("have %v, want an error wrapping mdm.ErrUnrecognizedMessageType that names the Go type", err)
	}
}
