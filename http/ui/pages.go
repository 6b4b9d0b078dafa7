package ui

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/commands"
	"github.com/nanomdm/nanomdm/metrics"
	"github.com/nanomdm/nanomdm/storage"
)

// certWarning is how close to expiry a push certificate gets a warning.
const certWarning = 30 * 24 * time.Hour

// seenLabels name the last-seen windows of storage.LastSeenWindows, and
// the "older" one after them.
var seenLabels = [len(storage.LastSeenWindows) + 1]string{"within 1 hour", "1 to 24 hours ago", "1 to 7 days ago", "over 7 days ago"}

// seenFilters are the values of the enrollments page's seen parameter.
var seenFilters = [len(seenLabels)]string{"1h", "24h", "7d", "older"}

// Bar is one bar of a chart.
type Bar struct {
	Label string
	N     int
	Pct   int // of the largest bar, 0..100
	Href  string
}

// TypeRow counts the enrollments of one channel type.
type TypeRow struct {
	Type              string
	Enabled, Disabled int
}

// CertInfo describes the push certificate of a topic.
type CertInfo struct {
	Topic       string
	Enrollments int
	Missing     bool
	NotAfter    time.Time
	Subject     string
	Expired     bool
	Expiring    bool // within certWarning
	Error       string
}

// ReportColumn is the chart column of one hour of command reports.
type ReportColumn struct {
	Start    time.Time
	Segments []ReportSegment
	Total    int
}

// ReportSegment is one status of a column, drawn from Y with height H
// (SVG units).
type ReportSegment struct {
	Status string
	N      int
	Y, H   int
}

type overviewData struct {
	Total, Enabled, Disabled, Queued int
	Types                            []TypeRow
	Seen                             []Bar
	Certs                            []CertInfo
	Backend                          string
	Reports                          []ReportColumn
	ReportStatuses                   []string
	ReportTotals                     map[string]int
	HasHistory                       bool
	ReportsTotal                     int
}

// reportStatuses are the statuses the chart draws, in stacking order.
var reportStatuses = []string{mdm.StatusAcknowledged, mdm.StatusNotNow, mdm.StatusError, mdm.StatusCommandFormatError}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, p *page) {
	now := c.now()
	counts, err := c.store.RetrieveFleetCounts(r.Context(), now)
	if err != nil {
		c.serverError(w, r, "counting enrollments", err)
		return
	}
	d := overviewData{Queued: counts.Queued, Backend: c.backend}
	seen := make([]int, len(seenLabels))
	types := map[string]*TypeRow{}
	topics := map[string]int{}
	for _, g := range counts.Groups {
		d.Total += g.N
		t := types[g.Type]
		if t == nil {
			t = &TypeRow{Type: g.Type}
			types[g.Type] = t
		}
		if g.Enabled {
			d.Enabled += g.N
			t.Enabled += g.N
			seen[g.Seen] += g.N
		} else {
			d.Disabled += g.N
			t.Disabled += g.N
		}
		topics[g.Topic] += g.N
	}
	for _, t := range types {
		d.Types = append(d.Types, *t)
	}
	slices.SortFunc(d.Types, func(a, b TypeRow) int { return strings.Compare(a.Type, b.Type) })
	d.Seen = bars(seen, func(i int) (string, string) {
		return seenLabels[i], Prefix + "/enrollments?enabled=true&seen=" + seenFilters[i]
	})
	if d.Certs, err = c.certInfos(r, topics, now); err != nil {
		c.serverError(w, r, "listing push certificates", err)
		return
	}
	if c.history != nil {
		d.HasHistory = true
		d.Reports, d.ReportTotals = reportChart(c.history.RecentReports(now))
		for _, n := range d.ReportTotals {
			d.ReportsTotal += n
		}
		d.ReportStatuses = reportStatuses
	}
	p.Title, p.Nav = "Overview", "overview"
	c.render(w, r, http.StatusOK, "overview", p, d)
}

// bars turns counts into chart bars scaled to the largest.
func bars(counts []int, label func(i int) (string, string)) []Bar {
	top := slices.Max(counts)
	out := make([]Bar, len(counts))
	for i, n := range counts {
		out[i].Label, out[i].Href = label(i)
		out[i].N = n
		if top > 0 {
			out[i].Pct = n * 100 / top
		}
	}
	return out
}

// chartHeight is the height of the report chart's bars, in SVG units.
const chartHeight = 120

// reportChart lays out the report history as stacked columns.
func reportChart(hours []metrics.ReportHour) ([]ReportColumn, map[string]int) {
	totals := map[string]int{}
	top := 0
	for _, h := range hours {
		n := 0
		for _, s := range reportStatuses {
			n += h.Counts[s]
			totals[s] += h.Counts[s]
		}
		top = max(top, n)
	}
	cols := make([]ReportColumn, len(hours))
	for i, h := range hours {
		col := ReportColumn{Start: h.Start}
		y := chartHeight
		for _, s := range reportStatuses {
			n := h.Counts[s]
			if n == 0 {
				continue
			}
			hgt := max(n*chartHeight/top, 1)
			y -= hgt
			col.Segments = append(col.Segments, ReportSegment{Status: s, N: n, Y: y, H: hgt})
			col.Total += n
		}
		cols[i] = col
	}
	return cols, totals
}

// certInfos describes the push certificate of every stored topic and of
// every topic enrollments use (counts: enrollments by topic), by topic.
func (c *Console) certInfos(r *http.Request, counts map[string]int, now time.Time) ([]CertInfo, error) {
	stored, err := c.store.RetrievePushCertTopics(r.Context())
	if err != nil {
		return nil, err
	}
	topics := slices.Collect(maps.Keys(counts))
	for _, t := range stored {
		if _, ok := counts[t]; !ok {
			topics = append(topics, t)
		}
	}
	slices.Sort(topics)
	out := make([]CertInfo, len(topics))
	for i, topic := range topics {
		out[i] = c.certInfo(r, topic, now)
		out[i].Enrollments = counts[topic]
	}
	return out, nil
}

// certInfo looks up the push certificate of topic.
func (c *Console) certInfo(r *http.Request, topic string, now time.Time) CertInfo {
	ci := CertInfo{Topic: topic}
	cert, _, err := c.store.RetrievePushCert(r.Context(), topic)
	switch {
	case errors.Is(err, storage.ErrNoPushCert):
		ci.Missing = true
		return ci
	case err != nil:
		ci.Error = err.Error()
		return ci
	case cert == nil || len(cert.Certificate) == 0:
		ci.Error = "stored certificate is empty"
		return ci
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			ci.Error = "parsing stored certificate: " + err.Error()
			return ci
		}
	}
	ci.NotAfter, ci.Subject = leaf.NotAfter, leaf.Subject.CommonName
	if ci.Subject == "" {
		ci.Subject = leaf.Subject.String()
	}
	ci.Expired = now.After(leaf.NotAfter)
	ci.Expiring = !ci.Expired && leaf.NotAfter.Sub(now) < certWarning
	return ci
}

// listQuery is the enrollments page's filter, as its URL says.
type listQuery struct {
	Q       string
	Type    string
	Enabled string // "", "true", "false"
	Seen    string // "", or one of seenFilters
	After   string
}

func (q listQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"q": q.Q, "type": q.Type, "enabled": q.Enabled, "seen": q.Seen, "after": q.After} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// URL is the page of q.
func (q listQuery) URL() string {
	if v := q.values().Encode(); v != "" {
		return Prefix + "/enrollments?" + v
	}
	return Prefix + "/enrollments"
}

type enrollmentsData struct {
	Query      listQuery
	Types      []string
	SeenLabels []Bar
	Found      []storage.Enrollment
	BySerial   bool
	NextURL    string
	FirstURL   string
}

// channelTypes are the types the filter offers.
var channelTypes = []string{
	mdm.Device.String(), mdm.User.String(), mdm.UserEnrollmentDevice.String(),
	mdm.UserEnrollment.String(), mdm.SharediPad.String(),
}

func (c *Console) enrollments(w http.ResponseWriter, r *http.Request, p *page) {
	v := r.URL.Query()
	lq := listQuery{Q: strings.TrimSpace(v.Get("q")), Type: v.Get("type"), Enabled: v.Get("enabled"), Seen: v.Get("seen"), After: v.Get("after")}
	q := &storage.EnrollmentQuery{Type: lq.Type, After: lq.After, Limit: pageSize + 1}
	switch lq.Enabled {
	case "true", "false":
		b := lq.Enabled == "true"
		q.Enabled = &b
	default:
		lq.Enabled = ""
	}
	now := c.now()
	if i := slices.Index(seenFilters[:], lq.Seen); i >= 0 {
		if i < len(storage.LastSeenWindows) {
			q.LastSeenAfter = now.Add(-storage.LastSeenWindows[i])
		}
		if i > 0 {
			q.LastSeenBefore = now.Add(-storage.LastSeenWindows[i-1])
		}
	} else {
		lq.Seen = ""
	}
	d := enrollmentsData{Query: lq, Types: channelTypes}
	for i, l := range seenLabels {
		d.SeenLabels = append(d.SeenLabels, Bar{Label: l, Href: seenFilters[i]})
	}
	var found []storage.Enrollment
	var err error
	if lq.Q != "" {
		// An ID first; failing that, a serial number.
		idq := *q
		idq.IDs = []string{lq.Q}
		found, err = c.store.RetrieveEnrollments(r.Context(), &idq)
		if err == nil && len(found) == 0 && lq.After == "" || err == nil && v.Get("by") == "serial" {
			sq := *q
			sq.SerialNumber = lq.Q
			found, err = c.store.RetrieveEnrollments(r.Context(), &sq)
			d.BySerial = true
		}
	} else {
		found, err = c.store.RetrieveEnrollments(r.Context(), q)
	}
	if errors.Is(err, storage.ErrBadCursor) {
		c.errorPage(w, r, http.StatusBadRequest, "That page link is not valid any more.")
		return
	}
	if err != nil {
		c.serverError(w, r, "listing enrollments", err)
		return
	}
	if len(found) > pageSize {
		found = found[:pageSize]
		next := lq
		next.After = found[pageSize-1].ID
		d.NextURL = next.URL()
		if d.BySerial {
			d.NextURL += "&by=serial"
		}
	}
	if lq.After != "" {
		first := lq
		first.After = ""
		d.FirstURL = first.URL()
	}
	d.Found = found
	p.Title, p.Nav = "Enrollments", "enrollments"
	c.render(w, r, http.StatusOK, "enrollments", p, d)
}

type enrollmentData struct {
	E          storage.Enrollment
	Users      []storage.Enrollment
	HasPush    bool
	Cert       *IdentityInfo
	Results    []recentView
	Queue      []storage.QueuedCommand
	QueueMore  bool
	Templates  []commands.Template
	Template   *commands.Template
	Sent       string // CommandUUID just queued
	Form       url.Values
	FormError  string
	ActionNote string
}

// maxQueueShown is the most queued commands the enrollment page lists.
const maxQueueShown = 100

// maxResultsShown is the most recent results the enrollment page shows.
const maxResultsShown = 10

// IdentityInfo describes the identity certificate of a device.
type IdentityInfo struct {
	Subject, Issuer string
	NotAfter        time.Time
	Expired         bool
	Expiring        bool // within certWarning
}

// recentView is one of the recent results of an enrollment.
type recentView struct {
	storage.RecentResult
	Plist string
}

// identityInfo describes cert, nil when there is none.
func identityInfo(cert *x509.Certificate, now time.Time) *IdentityInfo {
	if cert == nil {
		return nil
	}
	name := func(n pkix.Name) string {
		if n.CommonName != "" {
			return n.CommonName
		}
		return n.String()
	}
	return &IdentityInfo{
		Subject: name(cert.Subject), Issuer: name(cert.Issuer), NotAfter: cert.NotAfter,
		Expired:  now.After(cert.NotAfter),
		Expiring: !now.After(cert.NotAfter) && cert.NotAfter.Sub(now) < certWarning,
	}
}

// loadEnrollment reads enrollment {id}, answering 404 when there is none.
func (c *Console) loadEnrollment(w http.ResponseWriter, r *http.Request) (*storage.Enrollment, bool) {
	id := r.PathValue("id")
	if mdm.ValidateEnrollmentID(id) != nil {
		c.errorPage(w, r, http.StatusNotFound, "There is no enrollment with that ID.")
		return nil, false
	}
	found, err := c.store.RetrieveEnrollments(r.Context(), &storage.EnrollmentQuery{IDs: []string{id}, Limit: 1})
	if err != nil {
		c.serverError(w, r, "reading enrollment", err)
		return nil, false
	}
	if len(found) == 0 {
		c.errorPage(w, r, http.StatusNotFound, "There is no enrollment with that ID.")
		return nil, false
	}
	return &found[0], true
}

func (c *Console) enrollment(w http.ResponseWriter, r *http.Request, p *page) {
	e, ok := c.loadEnrollment(w, r)
	if !ok {
		return
	}
	d := &enrollmentData{E: *e, Form: url.Values{}}
	c.enrollmentPage(w, r, p, d, http.StatusOK)
}

// enrollmentPage fills in and renders the page of d.E.
func (c *Console) enrollmentPage(w http.ResponseWriter, r *http.Request, p *page, d *enrollmentData, status int) {
	ctx := r.Context()
	id := d.E.ID
	if d.E.ParentID == "" {
		// User channels sort right after "ID:" and before any other device.
		found, err := c.store.RetrieveEnrollments(ctx, &storage.EnrollmentQuery{After: id + ":", Limit: 50})
		if err != nil {
			c.serverError(w, r, "listing user channels", err)
			return
		}
		for _, u := range found {
			if u.ParentID != id {
				break
			}
			d.Users = append(d.Users, u)
		}
	}
	push, err := c.store.RetrievePushInfo(ctx, []string{id})
	if err != nil {
		c.serverError(w, r, "reading push data", err)
		return
	}
	d.HasPush = push[id] != nil
	cert, err := c.store.RetrieveIdentityCert(ctx, id)
	if err != nil {
		c.serverError(w, r, "reading identity certificate", err)
		return
	}
	d.Cert = identityInfo(cert, c.now())
	results, err := c.store.RetrieveRecentResults(ctx, id, maxResultsShown)
	if err != nil {
		c.serverError(w, r, "reading recent results", err)
		return
	}
	d.Results = make([]recentView, len(results))
	for i, res := range results {
		d.Results[i] = recentView{RecentResult: res, Plist: prettyPlist(res.Raw)}
	}
	q, err := c.store.RetrieveQueue(ctx, id, "", maxQueueShown+1)
	if err != nil {
		c.serverError(w, r, "reading queue", err)
		return
	}
	if len(q) > maxQueueShown {
		q, d.QueueMore = q[:maxQueueShown], true
	}
	d.Queue = q
	d.Templates = commands.Templates()
	if name := r.URL.Query().Get("template"); name != "" && d.Template == nil {
		if t, ok := commands.Lookup(name); ok {
			d.Template = &t
		}
	}
	if d.Sent == "" {
		d.Sent = r.URL.Query().Get("sent")
	}
	switch r.URL.Query().Get("done") {
	case "pushed":
		p.Flash = "Push sent."
	case "cleared":
		p.Flash = "Queue cleared."
	case "removed":
		p.Flash = "Removed " + r.URL.Query().Get("uuid") + " from the queue."
	case "pushfailed":
		d.ActionNote = "The push failed: " + c.pushProblem(r, d)
	}
	p.Title, p.Nav = id, "enrollments"
	c.render(w, r, status, "enrollment", p, d)
}

// pushProblem guesses why a push to the enrollment of d failed, from
// what the console can see; the server log has the error itself.
func (c *Console) pushProblem(r *http.Request, d *enrollmentData) string {
	switch ci := c.certInfo(r, d.E.Topic, c.now()); {
	case !d.HasPush:
		return "the enrollment has no push data."
	case ci.Missing:
		return "no push certificate is stored for topic " + d.E.Topic + "."
	case ci.Expired:
		return "the push certificate for topic " + d.E.Topic + " has expired."
	}
	return "APNs or the network refused it; the server log has the reason."
}

type commandData struct {
	UUID    string
	Results []resultView
	NextURL string
	ID      string
}

type resultView struct {
	ID     string
	Status string
	Plist  string
}

func (c *Console) command(w http.ResponseWriter, r *http.Request, p *page) {
	uuid := r.PathValue("uuid")
	after := r.URL.Query().Get("after")
	found, err := c.store.RetrieveCommandResults(r.Context(), uuid, after, pageSize+1, false)
	if err != nil {
		c.serverError(w, r, "reading command results", err)
		return
	}
	d := commandData{UUID: uuid, ID: r.URL.Query().Get("id")}
	if len(found) > pageSize {
		found = found[:pageSize]
		d.NextURL = Prefix + "/commands/" + url.PathEscape(uuid) + "?after=" + url.QueryEscape(found[pageSize-1].ID)
	}
	for _, res := range found {
		d.Results = append(d.Results, resultView{ID: res.ID, Status: res.Status, Plist: prettyPlist(res.Raw)})
	}
	p.Title, p.Nav = "Command "+uuid, "enrollments"
	c.render(w, r, http.StatusOK, "command", p, d)
}

type pushCertData struct {
	Certs  []CertInfo
	Lookup *CertInfo
	Stored string
}

func (c *Console) pushCert(w http.ResponseWriter, r *http.Request, p *page) {
	c.pushCertPage(w, r, p, http.StatusOK)
}

func (c *Console) pushCertPage(w http.ResponseWriter, r *http.Request, p *page, status int) {
	now := c.now()
	counts, err := c.store.RetrieveFleetCounts(r.Context(), now)
	if err != nil {
		c.serverError(w, r, "counting enrollments", err)
		return
	}
	topics := map[string]int{}
	for _, g := range counts.Groups {
		topics[g.Topic] += g.N
	}
	d := pushCertData{Stored: r.URL.Query().Get("stored")}
	if topic := r.URL.Query().Get("topic"); topic != "" {
		ci := c.certInfo(r, topic, now)
		ci.Enrollments = topics[topic]
		d.Lookup = &ci
	}
	if d.Certs, err = c.certInfos(r, topics, now); err != nil {
		c.serverError(w, r, "listing push certificates", err)
		return
	}
	p.Title, p.Nav = "Push certificate", "pushcert"
	c.render(w, r, status, "pushcert", p, d)
}
