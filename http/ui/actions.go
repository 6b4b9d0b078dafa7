package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm/commands"
)

// The console's actions call the API's handlers in process: the same
// parsing, limits, storage calls, push and status rules as /v1, so the
// console cannot drift from the API.

// recorder is the ResponseWriter an in-process API call answers into.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.header }
func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
}
func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.body.Write(b)
}

// errNoAction means the server was built without the API handler an
// action needs.
var errNoAction = errors.New("this action is not available on this server")

// callAPI runs API handler h for the console request r: method, the
// handler's path (after any StripPrefix), its path values, query and
// body. It returns the status and decodes the JSON answer into
// v; an answer {"error": …} is returned as the error.
func callAPI(r *http.Request, h http.Handler, method, path string, values map[string]string, query url.Values, body []byte, v any) (int, error) {
	if h == nil {
		return 0, errNoAction
	}
	req, err := http.NewRequestWithContext(r.Context(), method, "/", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.URL.Path, req.URL.RawQuery = path, query.Encode()
	req.RemoteAddr = r.RemoteAddr
	for k, v := range values {
		req.SetPathValue(k, v)
	}
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(rec.body.Bytes(), &e) == nil && e.Error != "" {
		return rec.status, errors.New(e.Error)
	}
	if v == nil || rec.body.Len() == 0 {
		if rec.status >= 400 {
			return rec.status, fmt.Errorf("%d %s", rec.status, http.StatusText(rec.status))
		}
		return rec.status, nil
	}
	if err := json.Unmarshal(rec.body.Bytes(), v); err != nil {
		return rec.status, fmt.Errorf("reading API answer (%d): %w", rec.status, err)
	}
	return rec.status, nil
}

// idOutcome reads the per-ID part of an enqueue or push answer.
func idOutcome(resp *api.Response, id string) (cmdErr, pushErr string) {
	if s := resp.Status[id]; s != nil {
		cmdErr, pushErr = s.CommandError, s.PushError
	}
	if cmdErr == "" {
		cmdErr = resp.CommandError
	}
	if pushErr == "" {
		pushErr = resp.PushError
	}
	return cmdErr, pushErr
}

func (c *Console) push(w http.ResponseWriter, r *http.Request, p *page) {
	e, ok := c.loadEnrollment(w, r)
	if !ok {
		return
	}
	var resp api.Response
	status, err := callAPI(r, c.actions.Push, http.MethodPost, e.ID, nil, nil, nil, &resp)
	if err == nil && status == http.StatusOK {
		http.Redirect(w, r, enrollmentURL(e.ID)+"?done=pushed", http.StatusSeeOther)
		return
	}
	reason := ""
	if err != nil {
		reason = err.Error()
	} else {
		_, reason = idOutcome(&resp, e.ID)
	}
	log.From(r.Context(), c.logger).Info("msg", "console push failed", "id", e.ID, "err", reason)
	http.Redirect(w, r, enrollmentURL(e.ID)+"?done=pushfailed", http.StatusSeeOther)
}

func (c *Console) clearQueue(w http.ResponseWriter, r *http.Request, p *page) {
	e, ok := c.loadEnrollment(w, r)
	if !ok {
		return
	}
	var resp api.ClearQueueResponse
	if _, err := callAPI(r, c.actions.Queue, http.MethodDelete, "", map[string]string{"id": e.ID}, nil, nil, &resp); err != nil || !resp.QueueCleared {
		d := &enrollmentData{E: *e, Form: url.Values{}, ActionNote: fmt.Sprintf("Clearing the queue failed: %v", err)}
		c.enrollmentPage(w, r, p, d, http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, enrollmentURL(e.ID)+"?done=cleared", http.StatusSeeOther)
}

func (c *Console) removeQueued(w http.ResponseWriter, r *http.Request, p *page) {
	e, ok := c.loadEnrollment(w, r)
	if !ok {
		return
	}
	uuid := r.PathValue("uuid")
	var resp api.RemoveQueuedCommandResponse
	status, err := callAPI(r, c.actions.Remove, http.MethodDelete, "", map[string]string{"id": e.ID, "uuid": uuid}, nil, nil, &resp)
	if err != nil || !resp.Removed {
		note := fmt.Sprintf("Removing %s failed: %v", uuid, err)
		if status == http.StatusNotFound {
			note = "Command " + uuid + " is no longer queued: the device answered it, or it was removed already."
		}
		d := &enrollmentData{E: *e, Form: url.Values{}, ActionNote: note}
		c.enrollmentPage(w, r, p, d, max(status, http.StatusBadRequest))
		return
	}
	http.Redirect(w, r, enrollmentURL(e.ID)+"?done=removed&uuid="+url.QueryEscape(uuid), http.StatusSeeOther)
}

// readFormFile reads an uploaded file of at most limit bytes; no file is
// nil and no error.
func readFormFile(r *http.Request, name string, limit int64) ([]byte, error) {
	if r.MultipartForm == nil || len(r.MultipartForm.File[name]) == 0 {
		return nil, nil
	}
	fh := r.MultipartForm.File[name][0]
	if fh.Size > limit {
		return nil, fmt.Errorf("%s: file larger than %d bytes", name, limit)
	}
	f, err := fh.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: file larger than %d bytes", name, limit)
	}
	return b, nil
}

// parseForm reads a urlencoded or multipart form within the body limit
// requireAuth set. It answers the client itself when it fails.
func (c *Console) parseForm(w http.ResponseWriter, r *http.Request) bool {
	var err error
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if r.MultipartForm == nil {
			err = r.ParseMultipartForm(multipartMemory)
		}
	} else {
		err = r.ParseForm()
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		c.errorPage(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form is larger than this server accepts (%d bytes).", c.bodyLimit))
		return false
	case err != nil && !errors.Is(err, multipart.ErrMessageTooLarge):
		c.errorPage(w, r, http.StatusBadRequest, "The form could not be read: "+err.Error())
		return false
	case err != nil:
		c.errorPage(w, r, http.StatusRequestEntityTooLarge, "The form is too large.")
		return false
	}
	return true
}

// commandFromForm builds the command plist of the send form: from a
// template and its parameters, or the raw plist pasted or uploaded.
func (c *Console) commandFromForm(r *http.Request) ([]byte, *commands.Template, error) {
	if r.FormValue("mode") == "raw" {
		raw := []byte(r.FormValue("plist"))
		file, err := readFormFile(r, "plistfile", c.bodyLimit)
		if err != nil {
			return nil, nil, err
		}
		if len(file) > 0 {
			raw = file
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			return nil, nil, errors.New("paste a command plist or choose a file")
		}
		return raw, nil, nil
	}
	name := r.FormValue("template")
	t, ok := commands.Lookup(name)
	if !ok {
		return nil, nil, fmt.Errorf("choose a command template (%q is not one)", name)
	}
	params := map[string]string{}
	for _, p := range t.Params {
		v := r.FormValue("p_" + p.Name)
		if p.Kind == commands.Data {
			b, err := readFormFile(r, "p_"+p.Name, c.bodyLimit)
			if err != nil {
				return nil, &t, err
			}
			v = string(b)
		}
		if v != "" {
			params[p.Name] = v
		}
	}
	cmd, err := commands.Build(name, "", params)
	if err != nil {
		return nil, &t, err
	}
	return cmd.Raw, &t, nil
}

func (c *Console) sendCommand(w http.ResponseWriter, r *http.Request, p *page) {
	if !c.parseForm(w, r) {
		return
	}
	e, ok := c.loadEnrollment(w, r)
	if !ok {
		return
	}
	d := &enrollmentData{E: *e, Form: r.Form}
	raw, t, err := c.commandFromForm(r)
	d.Template = t
	if err != nil {
		d.FormError = err.Error()
		c.enrollmentPage(w, r, p, d, http.StatusBadRequest)
		return
	}
	query := url.Values{}
	if r.FormValue("push") == "" {
		query.Set("nopush", "1")
	}
	var resp api.Response
	status, err := callAPI(r, c.actions.Enqueue, http.MethodPut, e.ID, nil, query, raw, &resp)
	if err != nil {
		d.FormError = err.Error()
		c.enrollmentPage(w, r, p, d, max(status, http.StatusBadRequest))
		return
	}
	cmdErr, pushErr := idOutcome(&resp, e.ID)
	switch {
	case cmdErr != "":
		d.FormError = cmdErr
		c.enrollmentPage(w, r, p, d, status)
	default:
		// Redirect, so that reloading or going back never sends it again.
		to := enrollmentURL(e.ID) + "?sent=" + url.QueryEscape(resp.CommandUUID)
		if pushErr != "" {
			log.From(r.Context(), c.logger).Info("msg", "console push after enqueue failed", "id", e.ID, "err", pushErr)
			to += "&done=pushfailed"
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
	}
}

func (c *Console) uploadPushCert(w http.ResponseWriter, r *http.Request, p *page) {
	if !c.parseForm(w, r) {
		return
	}
	var body []byte
	for _, name := range []string{"cert", "key"} {
		b, err := readFormFile(r, name, api.MaxPushCertBytes)
		if err != nil {
			p.Error = err.Error()
			c.pushCertPage(w, r, p, http.StatusRequestEntityTooLarge)
			return
		}
		body = append(append(body, b...), '\n')
	}
	var resp api.PushCertResponse
	status, err := callAPI(r, c.actions.PushCert, http.MethodPut, "/v1/pushcert", nil, nil, body, &resp)
	if err != nil {
		p.Error = "The certificate was not stored: " + err.Error()
		c.pushCertPage(w, r, p, max(status, http.StatusBadRequest))
		return
	}
	http.Redirect(w, r, Prefix+"/pushcert?stored=1&topic="+url.QueryEscape(resp.Topic), http.StatusSeeOther)
}

// enrollmentURL is the page of enrollment id.
func enrollmentURL(id string) string { return Prefix + "/enrollments/" + url.PathEscape(id) }
