package hub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// target names what a request is about, for error messages.
type target struct {
	repo     Repo
	revision string
	file     string
}

func (t target) err(k Kind, status int, detail, hint string, cause error) *Error {
	return &Error{Kind: k, Repo: t.repo, Revision: t.revision, File: t.file, Status: status, Detail: detail, Hint: hint, Err: cause}
}

// retryable are the statuses huggingface_hub retries with back-off.
func retryable(status int) bool {
	switch status {
	case 408, 429, 500, 502, 503, 504:
		return true
	}
	return false
}

// unreachable reports transport errors that mean the host cannot be
// reached at all (no route, refused, unknown name, connect timeout): these
// are not retried, so that an offline machine fails at once.
func unreachable(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH)
}

// origin is a URL's scheme, host and port.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// onHub reports whether raw is served by the configured endpoint or a known
// Hub host: the only hosts that see the token.
func (c *Client) onHub(raw string) bool {
	o := origin(raw)
	for _, h := range []string{c.cfg.Endpoint, DefaultEndpoint, "https://hf.co"} {
		if o == origin(h) {
			return true
		}
	}
	return false
}

// wait sleeps before retry number attempt (0-based), honouring Retry-After.
func (c *Client) wait(ctx context.Context, attempt int, resp *http.Response) error {
	d := c.cfg.BaseWait << attempt
	if d > c.cfg.MaxWait || d <= 0 {
		d = c.cfg.MaxWait
	}
	if resp != nil {
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
			d = time.Duration(s)*time.Second + c.cfg.BaseWait
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// send performs one request without following redirects, retrying
// transient failures (408, 429, 5xx, a connection cut or timed out after it
// was made) with back-off. The caller closes the response body.
func (c *Client) send(ctx context.Context, method, rawURL string, hdr http.Header, t target) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
		if err != nil {
			return nil, t.err(KindOther, 0, err.Error(), "", err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", "clm (huggingface_hub compatible)")
		if c.cfg.Token != "" && c.onHub(rawURL) {
			req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if unreachable(err) || attempt >= c.cfg.MaxRetries {
				return nil, t.err(KindUnavailable, 0, "cannot reach "+c.cfg.Endpoint+": "+transportDetail(err), "", err)
			}
			fmt.Fprintf(c.cfg.Log, "hub: %s %s: %v; retrying\n", method, rawURL, transportDetail(err))
			if err := c.wait(ctx, attempt, nil); err != nil {
				return nil, err
			}
			continue
		}
		if retryable(resp.StatusCode) && attempt < c.cfg.MaxRetries {
			fmt.Fprintf(c.cfg.Log, "hub: %s %s: HTTP %d; retrying\n", method, rawURL, resp.StatusCode)
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if err := c.wait(ctx, attempt, resp); err != nil {
				return nil, err
			}
			continue
		}
		return resp, nil
	}
}

// transportDetail shortens a transport error to its cause.
func transportDetail(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// follow performs method on rawURL and follows redirects. The token goes
// only to Hub hosts. With stopOffHub, a redirect to another host (a CDN) is
// not followed: the redirect response itself is returned, as
// huggingface_hub's metadata call does.
func (c *Client) follow(ctx context.Context, method, rawURL string, hdr http.Header, t target, stopOffHub bool) (*http.Response, string, error) {
	for range 20 {
		resp, err := c.send(ctx, method, rawURL, hdr, t)
		if err != nil {
			return nil, rawURL, err
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode >= 400 || loc == "" {
			return resp, rawURL, nil
		}
		base, err := url.Parse(rawURL)
		var next *url.URL
		if err == nil {
			next, err = base.Parse(loc)
		}
		if err != nil {
			resp.Body.Close()
			return nil, rawURL, t.err(KindOther, resp.StatusCode, "bad redirect "+loc, "", err)
		}
		if stopOffHub && !c.onHub(next.String()) {
			return resp, next.String(), nil
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		rawURL = next.String()
	}
	return nil, rawURL, t.err(KindOther, 0, "more than 20 redirects", "", nil)
}

// check turns an unsuccessful response into an *Error (nil for 1xx-3xx).
func (c *Client) check(resp *http.Response, t target) error {
	if resp.StatusCode < 400 {
		return nil
	}
	code := resp.Header.Get("X-Error-Code")
	msg := oneLine(resp.Header.Get("X-Error-Message"))
	st := resp.StatusCode
	page := c.cfg.Endpoint + "/" + t.repo.urlPrefix() + t.repo.ID
	switch {
	case code == "RevisionNotFound":
		return t.err(KindRevisionNotFound, st, msg, "give an existing branch, tag or commit", nil)
	case code == "EntryNotFound":
		return t.err(KindEntryNotFound, st, msg, "", nil)
	case code == "GatedRepo":
		return t.err(KindGated, st, msg, "accept its terms at "+page+" and log in: set HF_TOKEN or run `hf auth login`", nil)
	case st == 401 && msg == "Invalid credentials in Authorization header":
		return t.err(KindUnauthorized, st, msg, "set a valid HF_TOKEN or run `hf auth login`", nil)
	case code == "RepoNotFound" || st == 401:
		hint := "check the name and the repository type; " + loginHint
		if c.cfg.Token != "" {
			hint = "check the name and the repository type; if it is private or gated, make sure your token may read it"
		}
		return t.err(KindRepoNotFound, st, msg, hint, nil)
	case st == 403:
		return t.err(KindForbidden, st, msg, "your token lacks the permission to read it (a fine-grained token needs read access to this repository; a gated one needs its terms accepted at "+page+")", nil)
	case st == 404 && t.file != "":
		return t.err(KindEntryNotFound, st, msg, "", nil)
	case st == 404:
		return t.err(KindRepoNotFound, st, msg, loginHint, nil)
	case retryable(st):
		return t.err(KindUnavailable, st, msg, "the Hub kept failing; try again later", nil)
	}
	return t.err(KindOther, st, msg, "", nil)
}
