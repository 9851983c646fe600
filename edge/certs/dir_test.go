package certs

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgswitch/pgswitch/edge/internal/testpki"
)

func TestLoadDirChoosesBySNI(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	a := ca.Issue(t, []string{"a.example.com"}, testTimeZero, testTimeZero)
	b := ca.Issue(t, []string{"b.example.com", "*.wild.example.com"}, testTimeZero, testTimeZero)
	a.WriteCombined(t, filepath.Join(dir, "a.pem"))
	// b: certificate and key in separate files.
	testpki.WriteFile(t, filepath.Join(dir, "b.crt"), b.CertPEM)
	testpki.WriteFile(t, filepath.Join(dir, "b.key"), b.KeyPEM)
	testpki.WriteFile(t, filepath.Join(dir, "README"), []byte("not a certificate"))

	s, err := LoadDir(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Files(), ","); got != "a.pem,b.crt" {
		t.Fatalf("files %s, want a.pem,b.crt", got)
	}
	for _, tt := range []struct{ sni, want string }{
		{"a.example.com", "a.example.com"},
		{"A.Example.COM.", "a.example.com"},
		{"b.example.com", "b.example.com"},
		{"x.wild.example.com", "b.example.com"},
		{"y.x.wild.example.com", "a.example.com"}, // a wildcard covers one label only
		{"", "a.example.com"},                     // default: first file
		{"unknown.test", "a.example.com"},
	} {
		if got := s.Lookup(tt.sni).Leaf.Subject.CommonName; got != tt.want {
			t.Errorf("SNI %q: got %s, want %s", tt.sni, got, tt.want)
		}
	}

	s, err = LoadDir(dir, "b.crt")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Lookup("").Leaf.Subject.CommonName; got != "b.example.com" {
		t.Fatalf("default_cert b.crt: got %s", got)
	}
}

func TestLoadDirErrors(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	leaf := ca.Issue(t, []string{"a.example.com"}, testTimeZero, testTimeZero)
	tests := []struct {
		name  string
		files map[string][]byte
		def   string
		want  string
	}{
		{"empty", map[string][]byte{}, "", "no *.pem or *.crt"},
		{"key missing", map[string][]byte{"a.crt": leaf.CertPEM}, "", "no private key in it and no a.key"},
		{"not PEM", map[string][]byte{"a.pem": []byte("hello")}, "", "no CERTIFICATE block"},
		{"wrong key", map[string][]byte{"a.crt": leaf.CertPEM, "a.key": ca.Issue(t, []string{"x"}, testTimeZero, testTimeZero).KeyPEM}, "", "a.crt"},
		{"unknown default", map[string][]byte{"a.pem": append(leaf.CertPEM, leaf.KeyPEM...)}, "z.pem", "default_cert z.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, d := range tt.files {
				testpki.WriteFile(t, filepath.Join(dir, n), d)
			}
			_, err := LoadDir(dir, tt.def)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
