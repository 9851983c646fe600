package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Store is the certificates of one directory, read once.
type Store struct {
	byName   map[string]*tls.Certificate // lower-case DNS names; "*.example.com" for wildcards
	fallback *tls.Certificate
	files    []string
}

// LoadDir reads every *.pem and *.crt file in dir. A file holds a
// certificate chain and either its private key or, in the file of the same
// base name ending .key, has it beside it. defaultFile names the
// certificate served when SNI matches none (default: the first file by
// name).
func LoadDir(dir, defaultFile string) (*Store, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("certificate directory: %w", err)
	}
	s := &Store{byName: map[string]*tls.Certificate{}}
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if e.IsDir() || (ext != ".pem" && ext != ".crt") {
			continue
		}
		cert, err := loadPair(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		s.files = append(s.files, name)
		if s.fallback == nil || name == defaultFile {
			s.fallback = cert
		}
		for _, n := range cert.Leaf.DNSNames {
			n = strings.ToLower(n)
			// The first file by name wins a name claimed twice, so that
			// the choice does not depend on the directory's order.
			if _, taken := s.byName[n]; !taken {
				s.byName[n] = cert
			}
		}
	}
	if s.fallback == nil {
		return nil, fmt.Errorf("certificate directory %s: no *.pem or *.crt file", dir)
	}
	if defaultFile != "" && !slices.Contains(s.files, defaultFile) {
		return nil, fmt.Errorf("certificate directory %s: default_cert %s is not in it", dir, defaultFile)
	}
	return s, nil
}

// loadPair reads one certificate file and its key.
func loadPair(path string) (*tls.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	certPEM, keyPEM := splitPEM(data)
	if len(certPEM) == 0 {
		return nil, fmt.Errorf("certificate %s: no CERTIFICATE block", path)
	}
	if len(keyPEM) == 0 {
		keyPath := strings.TrimSuffix(path, filepath.Ext(path)) + ".key"
		keyPEM, err = os.ReadFile(keyPath)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("certificate %s: no private key in it and no %s", path, filepath.Base(keyPath))
		}
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", path, err)
		}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", path, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", path, err)
		}
	}
	return &cert, nil
}

// splitPEM separates certificate blocks from a private key block.
func splitPEM(data []byte) (certs, key []byte) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return certs, key
		}
		switch {
		case b.Type == "CERTIFICATE":
			certs = append(certs, pem.EncodeToMemory(b)...)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			key = pem.EncodeToMemory(b)
		}
	}
}

// Files lists the certificate files read, by name.
func (s *Store) Files() []string { return s.files }

// Lookup returns the certificate for an SNI name: an exact match, then a
// wildcard for its first label, then the default.
func (s *Store) Lookup(serverName string) *tls.Certificate {
	if serverName == "" {
		return s.fallback
	}
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if c := s.byName[name]; c != nil {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := s.byName["*"+name[i:]]; c != nil {
			return c
		}
	}
	return s.fallback
}

// GetCertificate is for tls.Config.GetCertificate.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.Lookup(hello.ServerName), nil
}
