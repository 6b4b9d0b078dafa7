package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/push/nanopush/apnstest"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// apiCall sends an API request to s and decodes the JSON answer.
func apiCall(t *testing.T, s *server, method, path string, body []byte, auth bool) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	if auth {
		req.SetBasicAuth("nanomdm", testAPIKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: answer %q is not JSON: %v", method, path, raw, err)
	}
	return resp.StatusCode, m
}

// TestPushRoutesAndFlags starts the server with -apns-url pointing at a
// fake APNs whose certificate the server does not trust: the push
// certificate routes work, and a push reaches that URL (and fails its TLS
// check, per ID).
func TestPushRoutesAndFlags(t *testing.T) {
	apns := apnstest.NewServer(t, nil)
	s, store := launch(t, launchConfig{storage: []string{"-storage", "inmem"},
		extra: []string{"-apns-url", apns.URL, "-push-timeout", "5s", "-push-workers", "2"}})
	topic := storagetest.NewTopic()
	pemCert, pemKey := storagetest.NewPushCert(t, topic)

	if code, _ := apiCall(t, s, http.MethodPut, "/v1/pushcert", append(pemCert, pemKey...), false); code != http.StatusUnauthorized {
		t.Errorf("PUT /v1/pushcert without auth: have %d, want 401", code)
	}
	if code, m := apiCall(t, s, http.MethodPut, "/v1/pushcert", append(pemCert, pemKey...), true); code != 200 || m["topic"] != topic {
		t.Fatalf("PUT /v1/pushcert: have %d %v, want 200 with topic %s", code, m, topic)
	}
	if code, m := apiCall(t, s, http.MethodGet, "/v1/pushcert?topic="+topic, nil, true); code != 200 || m["not_after"] == nil {
		t.Errorf("GET /v1/pushcert: have %d %v, want 200 with not_after", code, m)
	}
	if code, _ := apiCall(t, s, http.MethodPost, "/v1/pushcert", nil, true); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/pushcert: have %d, want 405", code)
	}

	dev := storagetest.NewDevice(t)
	dev.Topic = topic
	dev.Enroll(t, store)
	code, m := apiCall(t, s, http.MethodPost, "/v1/push/"+dev.ID(), nil, true)
	st, _ := m["status"].(map[string]any)[dev.ID()].(map[string]any)
	if code != http.StatusInternalServerError || !strings.Contains(st["push_error"].(string), "certificate") {
		t.Errorf("push to an untrusted APNs: have %d %v, want 500 with a TLS certificate push_error", code, m)
	}
	if apns.Connections() == 0 {
		t.Errorf("the server never connected to the -apns-url server")
	}
}

func TestPushFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-push-workers", "0"}, nil, "push workers"},
		{nil, map[string]string{"NANOMDM_PUSH_WORKERS": "-3"}, "push workers"},
		{[]string{"-push-timeout", "0s"}, nil, "push timeout"},
		{[]string{"-apns-sandbox", "-apns-url", "https://apns.example.com"}, nil, "-apns-sandbox and -apns-url"},
		{[]string{"-apns-url", "http://apns.example.com"}, nil, "APNs base URL"},
	} {
		args := append([]string{"nanomdm", "-disable-mdm", "-api", testAPIKey, "-storage", "inmem"}, tc.args...)
		var stderr bytes.Buffer
		err := run(t.Context(), args, func(k string) string { return tc.env[k] }, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v (env %v): have error %v, want one containing %q", tc.args, tc.env, err, tc.want)
		}
	}
}
