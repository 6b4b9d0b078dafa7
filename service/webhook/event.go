package webhook

import (
	"time"

	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
)

// Event topics. Check-ins are "mdm." plus their MessageType; every
// command report, Idle included, is TopicConnect.
const (
	TopicAuthenticate          = "mdm." + mdm.MessageAuthenticate
	TopicTokenUpdate           = "mdm." + mdm.MessageTokenUpdate
	TopicCheckOut              = "mdm." + mdm.MessageCheckOut
	TopicUserAuthenticate      = "mdm." + mdm.MessageUserAuthenticate
	TopicSetBootstrapToken     = "mdm." + mdm.MessageSetBootstrapToken
	TopicGetBootstrapToken     = "mdm." + mdm.MessageGetBootstrapToken
	TopicDeclarativeManagement = "mdm." + mdm.MessageDeclarativeManagement
	TopicGetToken              = "mdm." + mdm.MessageGetToken
	TopicConnect               = "mdm.Connect"
)

// Event is the JSON body of one webhook delivery, in the format MicroMDM
// established. Exactly one of CheckinEvent and AcknowledgeEvent is set.
type Event struct {
	Topic            string            `json:"topic"`
	EventID          string            `json:"event_id"`
	CreatedAt        time.Time         `json:"created_at"`
	AcknowledgeEvent *AcknowledgeEvent `json:"acknowledge_event,omitempty"`
	CheckinEvent     *CheckinEvent     `json:"checkin_event,omitempty"`
}

// IDs names the channel an event belongs to with our enrollment IDs.
type IDs struct {
	ID       string `json:"id"`
	ParentID string `json:"parent_id,omitempty"`
	Type     string `json:"type"`
}

// CheckinEvent describes a check-in message. RawPayload is the message
// exactly as the device sent it (encoded as base64 in JSON).
type CheckinEvent struct {
	UDID             string            `json:"udid,omitempty"`
	EnrollmentID     string            `json:"enrollment_id,omitempty"`
	IDs              *IDs              `json:"ids,omitempty"`
	URLParams        map[string]string `json:"url_params,omitempty"`
	RawPayload       []byte            `json:"raw_payload"`
	TokenUpdateTally *int              `json:"token_update_tally,omitempty"`
}

// AcknowledgeEvent describes a command report (Apple: "command and
// report results"), Idle polls included.
type AcknowledgeEvent struct {
	UDID         string            `json:"udid,omitempty"`
	EnrollmentID string            `json:"enrollment_id,omitempty"`
	IDs          *IDs              `json:"ids,omitempty"`
	Status       string            `json:"status"`
	CommandUUID  string            `json:"command_uuid,omitempty"`
	URLParams    map[string]string `json:"url_params,omitempty"`
	RawPayload   []byte            `json:"raw_payload"`
}

func idsOf(r *mdm.Request) *IDs {
	if r.EnrollID == nil {
		return nil
	}
	return &IDs{ID: r.EnrollID.ID, ParentID: r.EnrollID.ParentID, Type: r.EnrollID.Type.String()}
}

func params(r *mdm.Request) map[string]string {
	if len(r.Params) == 0 {
		return nil
	}
	return r.Params
}

// newCheckinEvent builds the event of a check-in message of the given
// topic. tally is only set for TokenUpdate (nil leaves it out).
func newCheckinEvent(r *mdm.Request, topic string, e *mdm.Enrollment, raw []byte, tally *int, now time.Time) *Event {
	return &Event{
		Topic:     topic,
		EventID:   log.TraceID(r.Context),
		CreatedAt: now,
		CheckinEvent: &CheckinEvent{
			UDID:             e.UDID,
			EnrollmentID:     e.EnrollmentID,
			IDs:              idsOf(r),
			URLParams:        params(r),
			RawPayload:       raw,
			TokenUpdateTally: tally,
		},
	}
}

// newAcknowledgeEvent builds the mdm.Connect event of a command report.
func newAcknowledgeEvent(r *mdm.Request, res *mdm.CommandResults, now time.Time) *Event {
	return &Event{
		Topic:     TopicConnect,
		EventID:   log.TraceID(r.Context),
		CreatedAt: now,
		AcknowledgeEvent: &AcknowledgeEvent{
			UDID:         res.UDID,
			EnrollmentID: res.EnrollmentID,
			IDs:          idsOf(r),
			Status:       res.Status,
			CommandUUID:  res.CommandUUID,
			URLParams:    params(r),
			RawPayload:   res.Raw,
		},
	}
}
