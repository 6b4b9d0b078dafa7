package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	mdmhttp "github.com/nanomdm/nanomdm/http"
)

// ErrBadForm means a multipart enqueue form is malformed.
var ErrBadForm = errors.New("bad enqueue form")

// The parts of a multipart enqueue form.
const (
	formCommand = "command"
	formIDs     = "ids"
)

// readEnqueue returns the enrollment IDs and the raw command of an
// enqueue request, or the status and error to answer. IDs in the path
// come with the command as the body; a path without IDs and a
// multipart/form-data body is a form. Both are held to the same limits:
// the body limit and the number of IDs.
func readEnqueue(w http.ResponseWriter, r *http.Request, o *options) (ids []string, raw []byte, status int, err error) {
	isForm := isMultipartForm(r.Header.Get("Content-Type"))
	inPath := strings.Trim(r.URL.Path, "/") != ""
	switch {
	case inPath && isForm:
		return nil, nil, http.StatusBadRequest, fmt.Errorf("%w: ids in both the path and a form: send one or the other", ErrBadForm)
	case !inPath && !isForm:
		return nil, nil, http.StatusBadRequest, fmt.Errorf("%w: no ids: name them in the path (/v1/enqueue/ID1,ID2) or send a multipart/form-data body with %q and %q parts", ErrBadIDs, formIDs, formCommand)
	case inPath:
		if ids, err = parseIDs(r.URL.Path, o.maxIDs); err != nil {
			return nil, nil, http.StatusBadRequest, err
		}
	}
	body, err := mdmhttp.ReadBody(w, r, o.bodyLimit)
	if err != nil {
		return nil, nil, mdmhttp.BodyStatus(err), fmt.Errorf("reading body: %w", err)
	}
	if !isForm {
		return ids, body, 0, nil
	}
	ids, raw, err = decodeEnqueueForm(r.Header.Get("Content-Type"), body, o.maxIDs)
	if err != nil {
		return nil, nil, http.StatusBadRequest, err
	}
	return ids, raw, 0, nil
}

func isMultipartForm(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "multipart/form-data"
}

// decodeEnqueueForm reads a multipart/form-data body of two parts:
// "command", the raw command plist (missing or empty: push only, like an
// empty body), and "ids", one enrollment ID a line (blank lines and
// spaces around an ID are ignored). Each part may appear once; any other
// part is an error. The IDs are checked like those of a path; the
// command is taken as sent (no Content-Transfer-Encoding decoding).
func decodeEnqueueForm(contentType string, body []byte, maxIDs int) (ids []string, raw []byte, err error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return nil, nil, fmt.Errorf("%w: content type %q has no boundary", ErrBadForm, contentType)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var idsText []byte
	seen := map[string]bool{}
	for {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrBadForm, err)
		}
		name := p.FormName()
		if name != formCommand && name != formIDs {
			return nil, nil, fmt.Errorf("%w: unknown part %q: want %q and %q", ErrBadForm, name, formCommand, formIDs)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("%w: part %q sent twice", ErrBadForm, name)
		}
		seen[name] = true
		// The whole body is in memory and within the limit already, so
		// a part cannot be longer than it.
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: reading part %q: %w", ErrBadForm, name, err)
		}
		if name == formCommand {
			raw = b
		} else {
			idsText = b
		}
	}
	if !seen[formIDs] {
		return nil, nil, fmt.Errorf("%w: no %q part (one enrollment ID a line)", ErrBadForm, formIDs)
	}
	for _, line := range strings.Split(string(idsText), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			ids = append(ids, line)
		}
	}
	if ids, err = checkIDs(ids, maxIDs); err != nil {
		return nil, nil, err
	}
	return ids, raw, nil
}
