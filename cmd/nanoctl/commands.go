package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nanomdm/nanomdm/cmd/internal/cli"
	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/commands"
)

// idsPerCall is how many enrollment IDs go into one push call or one
// enqueue call with the IDs in the URL path. An enqueue to more IDs sends
// them in a multipart form instead, formIDsPerCall at a time: well within
// the server's default -api-max-ids and body limit.
const (
	idsPerCall     = 1000
	formIDsPerCall = 100_000
)

// newFlags returns the flag set of a sub-command.
func newFlags(name, args string, c *client) *flag.FlagSet {
	fs := flag.NewFlagSet("nanoctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: nanoctl %s\n", args)
		fs.PrintDefaults()
	}
	return fs
}

// printJSON prints v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows in aligned columns under an upper-case header.
func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// orDash is s, or "-" for an empty cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeCell(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// oneArg checks that fs was given exactly one argument, named what.
func oneArg(fs *flag.FlagSet, what string) (string, error) {
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		fs.Usage()
		return "", fmt.Errorf("want one %s", what)
	}
	return fs.Arg(0), nil
}

func runTemplates(_ context.Context, c *client, args []string, _ io.Reader, stdout io.Writer) error {
	fs := newFlags("templates", "templates [NAME]", c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		ts := commands.Templates()
		if c.cfg.json {
			return printJSON(stdout, ts)
		}
		var rows [][]string
		for _, t := range ts {
			var params []string
			for _, p := range t.Params {
				params = append(params, p.Name)
			}
			rows = append(rows, []string{t.Name, t.Help, orDash(strings.Join(params, " "))})
		}
		return table(stdout, "NAME\tHELP\tPARAMETERS", rows)
	}
	name, err := oneArg(fs, "template NAME")
	if err != nil {
		return err
	}
	t, ok := commands.Lookup(name)
	if !ok {
		return fmt.Errorf("%w %q (nanoctl templates lists them)", commands.ErrUnknownTemplate, name)
	}
	if c.cfg.json {
		return printJSON(stdout, t)
	}
	fmt.Fprintf(stdout, "%s: %s\n", t.Name, t.Help)
	if len(t.Params) == 0 {
		return nil
	}
	var rows [][]string
	for _, p := range t.Params {
		help := p.Help
		if len(p.Choices) > 0 {
			help += " (one of " + strings.Join(p.Choices, ", ") + ")"
		}
		if p.Default != "" {
			help += " (default " + p.Default + ")"
		}
		if p.Kind == commands.Data {
			help += " (a file name; - reads standard input)"
		}
		rows = append(rows, []string{p.Name, string(p.Kind), strconv.FormatBool(p.Required), help})
	}
	return table(stdout, "PARAMETER\tKIND\tREQUIRED\tHELP", rows)
}

// inputs reads files and standard input, which only one of them may be.
type inputs struct {
	stdin     io.Reader
	stdinUsed bool
}

// read reads a file, or standard input for "-".
func (in *inputs) read(path string) ([]byte, error) {
	if path != "-" {
		return os.ReadFile(path)
	}
	if in.stdinUsed {
		return nil, errors.New("standard input (-) can be read only once")
	}
	in.stdinUsed = true
	return io.ReadAll(io.LimitReader(in.stdin, maxAnswerBytes))
}

// readIDs returns the IDs of a file: one a line, blank lines and lines
// starting with # skipped.
func readIDs(path string, in *inputs) ([]string, error) {
	b, err := in.read(path)
	if err != nil {
		return nil, fmt.Errorf("reading IDs: %w", err)
	}
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			ids = append(ids, line)
		}
	}
	return ids, nil
}

// targetIDs are the IDs of the arguments and of -ids-file.
func targetIDs(fs *flag.FlagSet, idsFile string, in *inputs) ([]string, error) {
	ids := fs.Args()
	if idsFile != "" {
		more, err := readIDs(idsFile, in)
		if err != nil {
			return nil, err
		}
		ids = append(ids, more...)
	}
	if len(ids) == 0 {
		fs.Usage()
		return nil, errors.New("no enrollment IDs: give them as arguments or in -ids-file")
	}
	for _, id := range ids {
		if strings.Contains(id, ",") {
			return nil, fmt.Errorf("enrollment ID %q contains a comma: give IDs as separate arguments", id)
		}
	}
	return ids, nil
}

// buildCommand makes the command plist from -plist or from a template
// and its -p values.
func buildCommand(plistFile, template, uuid string, params cli.StringList, in *inputs) ([]byte, error) {
	if plistFile != "" {
		if template != "" || len(params) > 0 || uuid != "" {
			return nil, errors.New("-plist sends the file as it is: give no -t, -p or -uuid with it")
		}
		raw, err := in.read(plistFile)
		if err != nil {
			return nil, fmt.Errorf("reading command plist: %w", err)
		}
		if _, err := mdm.DecodeCommand(raw); err != nil {
			return nil, fmt.Errorf("%s: %w", plistFile, err)
		}
		return raw, nil
	}
	if template == "" {
		return nil, errors.New("no command: give -t TEMPLATE (see nanoctl templates) or -plist FILE")
	}
	t, ok := commands.Lookup(template)
	if !ok {
		return nil, fmt.Errorf("%w %q (nanoctl templates lists them)", commands.ErrUnknownTemplate, template)
	}
	values := map[string]string{}
	for _, p := range params {
		name, value, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("-p %q: want name=value", p)
		}
		for _, tp := range t.Params {
			if tp.Name == name && tp.Kind == commands.Data && value != "" {
				b, err := in.read(value)
				if err != nil {
					return nil, fmt.Errorf("-p %s: %w", name, err)
				}
				if len(b) == 0 {
					return nil, fmt.Errorf("-p %s: %s is empty", name, value)
				}
				value = string(b)
			}
		}
		values[name] = value
	}
	cmd, err := commands.Build(template, uuid, values)
	if err != nil {
		return nil, err
	}
	return cmd.Raw, nil
}

// chunks splits ids into calls of at most idsPerCall.
func chunks(ids []string, size int) [][]string {
	var out [][]string
	for len(ids) > size {
		out = append(out, ids[:size])
		ids = ids[size:]
	}
	return append(out, ids)
}

// sendToIDs calls path/IDs (comma-separated, in chunks) and merges the
// answers. It returns the first API error after every chunk was sent.
// An enqueue to more than idsPerCall IDs goes as multipart forms to
// /v1/enqueue instead (see enqueueForm).
func sendToIDs(ctx context.Context, c *client, method, path string, query url.Values, body []byte, ids []string) (*api.Response, error) {
	all := &api.Response{Status: map[string]*api.IDStatus{}}
	asForm := path == "/v1/enqueue/" && len(ids) > idsPerCall
	size := idsPerCall
	if asForm {
		size = formIDsPerCall
	}
	var firstErr error
	for _, chunk := range chunks(ids, size) {
		var resp api.Response
		var err error
		if asForm {
			form, contentType := enqueueForm(body, chunk)
			err = c.callWith(ctx, http.MethodPost, "/v1/enqueue", query, contentType, form, &resp)
		} else {
			escaped := make([]string, len(chunk))
			for i, id := range chunk {
				escaped[i] = url.PathEscape(id)
			}
			err = c.call(ctx, method, path+strings.Join(escaped, ","), query, body, &resp)
		}
		var apiErr *apiError
		if err != nil && !errors.As(err, &apiErr) {
			return nil, err
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
		for id, s := range resp.Status {
			all.Status[id] = s
		}
		all.NoPush = resp.NoPush
		all.CommandUUID, all.RequestType = resp.CommandUUID, resp.RequestType
		if resp.CommandError != "" {
			all.CommandError = resp.CommandError
		}
		if resp.PushError != "" {
			all.PushError = resp.PushError
		}
	}
	return all, firstErr
}

// enqueueForm builds the multipart/form-data body of /v1/enqueue: the
// command plist and the IDs one a line. It returns the body and its
// content type.
func enqueueForm(command []byte, ids []string) ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	// Writes to a bytes.Buffer do not fail.
	w, _ := mw.CreateFormFile("command", "cmd.plist")
	w.Write(command)
	w, _ = mw.CreateFormFile("ids", "ids.txt")
	for _, id := range ids {
		io.WriteString(w, id+"\n")
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// printIDStatus prints the per-ID part of an enqueue or push answer.
func printIDStatus(c *client, stdout io.Writer, resp *api.Response, ids []string) error {
	if c.cfg.json {
		return printJSON(stdout, resp)
	}
	if resp.CommandUUID != "" {
		fmt.Fprintf(stdout, "command %s %s\n", resp.CommandUUID, resp.RequestType)
	}
	var rows [][]string
	for _, id := range ids {
		s := resp.Status[id]
		if s == nil {
			s = &api.IDStatus{}
		}
		command := "queued"
		if resp.CommandUUID == "" {
			command = "-"
		}
		if s.CommandError != "" {
			command = "error: " + s.CommandError
		}
		push := "sent " + s.PushResult
		switch {
		case resp.NoPush:
			push = "not asked"
		case s.PushError != "":
			push = "error: " + s.PushError
		}
		rows = append(rows, []string{id, command, push})
	}
	return table(stdout, "ID\tCOMMAND\tPUSH", rows)
}

func runEnqueue(ctx context.Context, c *client, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := newFlags("enqueue", "enqueue [flags] ID...  (flags: -t TEMPLATE [-p name=value]... | -plist FILE)", c)
	template := fs.String("t", "", "command template (nanoctl templates lists them)")
	var params cli.StringList
	fs.Var(&params, "p", "template parameter name=value, repeatable; a data parameter's value is a file name (- reads standard input)")
	plistFile := fs.String("plist", "", "send this command plist file as it is (- reads standard input)")
	uuid := fs.String("uuid", "", "CommandUUID of a template's command (default: a new random UUID)")
	idsFile := fs.String("ids-file", "", "file of enrollment IDs, one a line (- reads standard input)")
	noPush := fs.Bool("nopush", false, "queue without pushing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	in := &inputs{stdin: stdin}
	ids, err := targetIDs(fs, *idsFile, in)
	if err != nil {
		return err
	}
	raw, err := buildCommand(*plistFile, *template, *uuid, params, in)
	if err != nil {
		return err
	}
	var query url.Values
	if *noPush {
		query = url.Values{"nopush": {"1"}}
	}
	resp, callErr := sendToIDs(ctx, c, http.MethodPut, "/v1/enqueue/", query, raw, ids)
	if resp != nil {
		if err := printIDStatus(c, stdout, resp, ids); err != nil {
			return err
		}
	}
	return callErr
}

func runPush(ctx context.Context, c *client, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := newFlags("push", "push [-ids-file FILE] ID...", c)
	idsFile := fs.String("ids-file", "", "file of enrollment IDs, one a line (- reads standard input)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ids, err := targetIDs(fs, *idsFile, &inputs{stdin: stdin})
	if err != nil {
		return err
	}
	resp, callErr := sendToIDs(ctx, c, http.MethodPost, "/v1/push/", nil, nil, ids)
	if resp != nil {
		if err := printIDStatus(c, stdout, resp, ids); err != nil {
			return err
		}
	}
	return callErr
}

// pages GETs every page of path, following the cursor, and hands each
// decoded page to add, which returns the page's next cursor.
func pages[P any](ctx context.Context, c *client, path string, q url.Values, add func(*P) string) error {
	for {
		var page P
		if err := c.call(ctx, http.MethodGet, path, q, nil, &page); err != nil {
			return err
		}
		next := add(&page)
		if next == "" {
			return nil
		}
		q.Set("cursor", next)
	}
}

// listEnrollments fetches every page of /v1/enrollments for q.
func listEnrollments(ctx context.Context, c *client, q url.Values) ([]api.EnrollmentJSON, error) {
	var all []api.EnrollmentJSON
	err := pages(ctx, c, "/v1/enrollments", q, func(p *api.EnrollmentsResponse) string {
		all = append(all, p.Enrollments...)
		return p.NextCursor
	})
	return all, err
}

func runEnrollments(ctx context.Context, c *client, args []string, _ io.Reader, stdout io.Writer) error {
	fs := newFlags("enrollments", "enrollments [flags]", c)
	var ids cli.StringList
	fs.Var(&ids, "id", "only this enrollment ID, repeatable")
	serial := fs.String("serial", "", "only the channels of the device with this serial number")
	typ := fs.String("type", "", "only this channel type, e.g. Device or User")
	enabled := fs.String("enabled", "", "only enabled (true) or disabled (false) channels")
	seenBefore := fs.String("last-seen-before", "", "only channels last seen before this RFC 3339 time")
	seenAfter := fs.String("last-seen-after", "", "only channels last seen after this RFC 3339 time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q (IDs go in -id)", fs.Args())
	}
	q := url.Values{}
	for name, v := range map[string]string{"serial_number": *serial, "type": *typ, "enabled": *enabled,
		"last_seen_before": *seenBefore, "last_seen_after": *seenAfter} {
		if v != "" {
			q.Set(name, v)
		}
	}
	if len(ids) > 0 {
		q["id"] = ids
	}
	found, err := listEnrollments(ctx, c, q)
	if err != nil {
		return err
	}
	if c.cfg.json {
		return printJSON(stdout, api.EnrollmentsResponse{Enrollments: found})
	}
	var rows [][]string
	for _, e := range found {
		rows = append(rows, []string{e.ID, e.Type, strconv.FormatBool(e.Enabled), orDash(e.SerialNumber),
			timeCell(e.LastSeen), orDash(e.ParentID)})
	}
	return table(stdout, "ID\tTYPE\tENABLED\tSERIAL\tLAST SEEN\tDEVICE", rows)
}

func runEnrollment(ctx context.Context, c *client, args []string, _ io.Reader, stdout io.Writer) error {
	fs := newFlags("enrollment", "enrollment ID", c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneArg(fs, "enrollment ID")
	if err != nil {
		return err
	}
	found, err := listEnrollments(ctx, c, url.Values{"id": {id}})
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return fmt.Errorf("no enrollment %q", id)
	}
	e := found[0]
	if c.cfg.json {
		return printJSON(stdout, e)
	}
	return table(stdout, "FIELD\tVALUE", [][]string{
		{"id", e.ID},
		{"device", orDash(e.ParentID)},
		{"type", e.Type},
		{"enabled", strconv.FormatBool(e.Enabled)},
		{"serial number", orDash(e.SerialNumber)},
		{"topic", orDash(e.Topic)},
		{"last seen", timeCell(e.LastSeen)},
		{"token updates", strconv.Itoa(e.TokenUpdateTally)},
		{"bootstrap token", strconv.FormatBool(e.BootstrapTokenEscrowed)},
	})
}

func runQueue(ctx context.Context, c *client, args []string, _ io.Reader, stdout io.Writer) error {
	fs := newFlags("queue", "queue ID", c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneArg(fs, "enrollment ID")
	if err != nil {
		return err
	}
	all := api.QueueResponse{ID: id, Commands: []api.QueuedCommandJSON{}}
	err = pages(ctx, c, "/v1/enrollments/"+url.PathEscape(id)+"/queue", url.Values{}, func(p *api.QueueResponse) string {
		all.Commands = append(all.Commands, p.Commands...)
		return p.NextCursor
	})
	if err != nil {
		return err
	}
	if c.cfg.json {
		return printJSON(stdout, all)
	}
	var rows [][]string
	for _, cmd := range all.Commands {
		rows = append(rows, []string{cmd.CommandUUID, cmd.RequestType, timeCell(cmd.EnqueuedAt),
			orDash(cmd.Status), strconv.Itoa(cmd.NotNowCount)})
	}
	return table(stdout, "COMMAND UUID\tREQUEST TYPE\tQUEUED AT\tSTATUS\tNOTNOW", rows)
}

func runClearQueue(ctx context.Context, c *client, args []string, _ io.Reader, stdout io.Writer) error {
	fs := newFlags("clear-queue", "clear-queue ID", c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneArg(fs, "enrollment ID")
	if err != nil {
		return err
	}
	var resp api.ClearQueueResponse
	if err := c.call(ctx, http.MethodDelete, "/v1/enrollments/"+url.PathEscape(id)+"/queue", nil, nil, &resp); err != nil {
		return err
	}
	if c.cfg.json {
		return printJSON(stdout, resp)
	}
	fmt.Fprintf(stdout, "cleared the queue of %s\n", resp.ID)
	return nil
}

func runResults(ctx context.Context, c *client, args []string, _ io.Reader, stdout io.Writer) error {
	fs := newFlags("results", "results [-raw] UUID", c)
	raw := fs.Bool("raw", false, "print each result plist after the table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	uuid, err := oneArg(fs, "command UUID")
	if err != nil {
		return err
	}
	all := api.CommandResultsResponse{CommandUUID: uuid, Results: []api.CommandResultJSON{}}
	q := url.Values{}
	if !*raw && !c.cfg.json {
		q.Set("status_only", "1")
	}
	err = pages(ctx, c, "/v1/commands/"+url.PathEscape(uuid)+"/results", q, func(p *api.CommandResultsResponse) string {
		all.Results = append(all.Results, p.Results...)
		return p.NextCursor
	})
	if err != nil {
		return err
	}
	if c.cfg.json {
		return printJSON(stdout, all)
	}
	if len(all.Results) == 0 {
		fmt.Fprintf(stdout, "no results for command %s yet\n", uuid)
		return nil
	}
	var rows [][]string
	for _, r := range all.Results {
		rows = append(rows, []string{r.ID, r.Status})
	}
	if err := table(stdout, "ID\tSTATUS", rows); err != nil {
		return err
	}
	if *raw {
		for _, r := range all.Results {
			fmt.Fprintf(stdout, "\n# %s %s\n%s\n", r.ID, r.Status, strings.TrimSpace(string(r.Result)))
		}
	}
	return nil
}

// printPushCerts prints push certificates with how long each has left.
func printPushCerts(c *client, stdout io.Writer, certs []api.PushCertResponse, v any) error {
	if c.cfg.json {
		return printJSON(stdout, v)
	}
	sort.Slice(certs, func(i, j int) bool { return certs[i].Topic < certs[j].Topic })
	var rows [][]string
	for _, pc := range certs {
		left := time.Until(pc.NotAfter)
		expires := fmt.Sprintf("in %d days", int(left.Hours()/24))
		if left <= 0 {
			expires = "EXPIRED"
		}
		rows = append(rows, []string{pc.Topic, pc.NotAfter.UTC().Format(time.RFC3339), expires})
	}
	return table(stdout, "TOPIC\tNOT AFTER\tEXPIRES", rows)
}

func runPushCert(ctx context.Context, c *client, args []string, _ io.Reader, stdout io.Writer) error {
	fs := newFlags("pushcert", "pushcert [TOPIC]", c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		var list api.PushCertsResponse
		if err := c.call(ctx, http.MethodGet, "/v1/pushcert", nil, nil, &list); err != nil {
			return err
		}
		if len(list.PushCerts) == 0 && !c.cfg.json {
			fmt.Fprintln(stdout, "no push certificates stored (nanoctl upload-pushcert adds one)")
			return nil
		}
		return printPushCerts(c, stdout, list.PushCerts, list)
	}
	topic, err := oneArg(fs, "topic")
	if err != nil {
		return err
	}
	var pc api.PushCertResponse
	if err := c.call(ctx, http.MethodGet, "/v1/pushcert", url.Values{"topic": {topic}}, nil, &pc); err != nil {
		return err
	}
	return printPushCerts(c, stdout, []api.PushCertResponse{pc}, pc)
}

func runUploadPushCert(ctx context.Context, c *client, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := newFlags("upload-pushcert", "upload-pushcert CERT.pem [KEY.pem]  (one file may hold both)", c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return errors.New("want the certificate file and, unless it holds the key too, the key file")
	}
	var body []byte
	in := &inputs{stdin: stdin}
	for _, path := range fs.Args() {
		b, err := in.read(path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		body = append(append(body, b...), '\n')
	}
	var pc api.PushCertResponse
	if err := c.call(ctx, http.MethodPut, "/v1/pushcert", nil, body, &pc); err != nil {
		return err
	}
	if !c.cfg.json {
		fmt.Fprintf(stdout, "stored the push certificate of %s\n", pc.Topic)
	}
	return printPushCerts(c, stdout, []api.PushCertResponse{pc}, pc)
}
