package backend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/pgswitch/pgswitch/edge/config"
)

// ClientTLS returns the TLS configuration for connections to s, or nil when
// s speaks plain HTTP. With verify: required (the default) the chain must
// lead to ca_file's certificates (else the system's roots) and name
// server_name; nothing falls back to an unverified connection.
func ClientTLS(s *config.Server) (*tls.Config, error) {
	if s.TLS == nil {
		return nil, nil
	}
	c := &tls.Config{ServerName: s.TLS.ServerName, MinVersion: tls.VersionTLS12}
	if s.TLS.Verify == "none" {
		c.InsecureSkipVerify = true
		return c, nil
	}
	if s.TLS.CAFile != "" {
		data, err := os.ReadFile(s.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", s.TLS.CAFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}

// NewProber returns the check of s: an HTTP request as http_check says for
// http listens, a TCP connect for tcp listens.
func NewProber(l *config.Listen, s *config.Server) (Prober, error) {
	dialer := &net.Dialer{Timeout: l.Timeouts.Connect}
	if l.Mode == config.ModeTCP {
		return func(ctx context.Context) error {
			c, err := dialer.DialContext(ctx, "tcp", s.Addr)
			if err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			return c.Close()
		}, nil
	}
	tlsConf, err := ClientTLS(s)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if tlsConf != nil {
		scheme = "https"
	}
	// A check opens a connection of its own each time, as HAProxy's do, so
	// that it sees what a new client connection would.
	client := &http.Client{
		Transport: &http.Transport{DialContext: dialer.DialContext, TLSClientConfig: tlsConf,
			DisableKeepAlives: true, ForceAttemptHTTP2: false},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	hc := l.HTTPCheck
	url := scheme + "://" + s.Addr + hc.Path
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, hc.Method, url, nil)
		if err != nil {
			return fmt.Errorf("check request: %w", err)
		}
		req.Header.Set("User-Agent", "pgswitch-edge-check")
		if hc.Host != "" {
			req.Host = hc.Host
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: %w", hc.Method, hc.Path, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		ok := resp.StatusCode >= 200 && resp.StatusCode < 400
		if hc.ExpectStatus != 0 {
			ok = resp.StatusCode == hc.ExpectStatus
		}
		if !ok {
			return fmt.Errorf("%s %s: status %d", hc.Method, hc.Path, resp.StatusCode)
		}
		return nil
	}, nil
}
