package mdm

import "github.com/nanomdm/nanomdm/mdm/internal/plistcheck"

// The hot messages (command reports, and the MessageType of check-ins)
// are first read by plistcheck.ScanSimpleXML, one pass over the bytes
// instead of a bounds check and a full decode through encoding/xml. The
// scan only succeeds on input the general path would decode to the same
// values; on anything else the general path runs and has the last word.

// scanCommandResults fills r from a simple XML report and reports
// success. A report with an ErrorChain, or whose string keys hold other
// kinds, is left to the general path.
func scanCommandResults(raw []byte, r *CommandResults) bool {
	return plistcheck.ScanSimpleXML(raw, plistcheck.DefaultLimits, func(key []byte, kind plistcheck.Kind, text []byte) bool {
		var field *string
		switch string(key) {
		case "UDID":
			field = &r.UDID
		case "UserID":
			field = &r.UserID
		case "UserShortName":
			field = &r.UserShortName
		case "UserLongName":
			field = &r.UserLongName
		case "EnrollmentID":
			field = &r.EnrollmentID
		case "EnrollmentUserID":
			field = &r.EnrollmentUserID
		case "CommandUUID":
			field = &r.CommandUUID
		case "Status":
			field = &r.Status
		case "RequestType":
			field = &r.RequestType
		case "ErrorChain":
			return false
		default:
			return true
		}
		if kind != plistcheck.String {
			return false
		}
		*field = string(text)
		return true
	})
}

// scanMessageType reads the MessageType of a simple XML check-in and
// reports success.
func scanMessageType(raw []byte, mt *MessageType) bool {
	return plistcheck.ScanSimpleXML(raw, plistcheck.DefaultLimits, func(key []byte, kind plistcheck.Kind, text []byte) bool {
		if string(key) != "MessageType" {
			return true
		}
		if kind != plistcheck.String {
			return false
		}
		mt.MessageType = string(text)
		return true
	})
}
