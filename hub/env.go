package hub

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultEndpoint is the public Hub.
const DefaultEndpoint = "https://huggingface.co"

// Config sets where the client talks to and where it caches. FromEnv fills
// it as huggingface_hub does, so that both share one cache.
type Config struct {
	// Endpoint is the Hub's base URL ($HF_ENDPOINT, default DefaultEndpoint).
	Endpoint string
	// Token is sent as a bearer token to the Hub (never to other hosts):
	// $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, then the token file
	// ($HF_TOKEN_PATH, default $HF_HOME/token) that `hf auth login` writes.
	Token string
	// CacheDir is the hub cache: $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE, else
	// $HF_HOME/hub ($HF_HOME defaults to $XDG_CACHE_HOME/huggingface or
	// ~/.cache/huggingface).
	CacheDir string
	// Offline makes no request at all and serves only the cache
	// ($HF_HUB_OFFLINE or $TRANSFORMERS_OFFLINE: 1, ON, YES or TRUE).
	Offline bool
	// HTTP is the client (default: one with MetadataTimeout for headers).
	HTTP *http.Client
	// Log receives one-line messages (default: io.Discard).
	Log io.Writer
	// Progress, when set, makes a progress reporter per downloaded file.
	Progress func() Progress
	// MaxRetries bounds retries of a request answered 408, 429 or 5xx, or
	// cut while its body streams (default 5, as huggingface_hub).
	MaxRetries int
	// BaseWait and MaxWait bound the exponential back-off between retries
	// (default 1 s doubling to 8 s, as huggingface_hub); a Retry-After header
	// overrides it.
	BaseWait, MaxWait time.Duration
	// MetadataTimeout bounds the wait for a response's headers (default
	// 10 s, as huggingface_hub's HF_HUB_ETAG_TIMEOUT).
	MetadataTimeout time.Duration
}

// Progress reports a file's download (data.Progress satisfies it).
type Progress interface {
	Start(desc string, total int64)
	Add(n int64)
	Finish()
}

func envTrue(name string) bool {
	switch strings.ToUpper(os.Getenv(name)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// expand applies os.ExpandEnv and a leading ~, as Python's
// os.path.expandvars(os.path.expanduser(p)).
func expand(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = home + p[1:]
		}
	}
	return os.ExpandEnv(p)
}

// HFHome returns $HF_HOME, else $XDG_CACHE_HOME/huggingface, else
// ~/.cache/huggingface.
func HFHome() string {
	if h := os.Getenv("HF_HOME"); h != "" {
		return expand(h)
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "."
		}
		base = filepath.Join(home, ".cache")
	}
	return expand(filepath.Join(base, "huggingface"))
}

// FromEnv returns the configuration huggingface_hub would use in this
// environment.
func FromEnv() Config {
	c := Config{Endpoint: strings.TrimRight(os.Getenv("HF_ENDPOINT"), "/")}
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	home := HFHome()
	switch {
	case os.Getenv("HF_HUB_CACHE") != "":
		c.CacheDir = expand(os.Getenv("HF_HUB_CACHE"))
	case os.Getenv("HUGGINGFACE_HUB_CACHE") != "":
		c.CacheDir = expand(os.Getenv("HUGGINGFACE_HUB_CACHE"))
	default:
		c.CacheDir = filepath.Join(home, "hub")
	}
	c.Offline = envTrue("HF_HUB_OFFLINE") || envTrue("TRANSFORMERS_OFFLINE")
	if !envTrue("HF_HUB_DISABLE_IMPLICIT_TOKEN") {
		c.Token = cleanToken(os.Getenv("HF_TOKEN"))
		if c.Token == "" {
			c.Token = cleanToken(os.Getenv("HUGGING_FACE_HUB_TOKEN"))
		}
		if c.Token == "" {
			path := os.Getenv("HF_TOKEN_PATH")
			if path == "" {
				path = filepath.Join(home, "token")
			}
			if b, err := os.ReadFile(expand(path)); err == nil {
				c.Token = cleanToken(string(b))
			}
		}
	}
	return c
}

// cleanToken drops newlines and surrounding spaces, as huggingface_hub does.
func cleanToken(t string) string {
	return strings.TrimSpace(strings.NewReplacer("\r", "", "\n", "").Replace(t))
}

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	c.Endpoint = strings.TrimRight(c.Endpoint, "/")
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 5
	}
	if c.BaseWait == 0 {
		c.BaseWait = time.Second
	}
	if c.MaxWait == 0 {
		c.MaxWait = 8 * time.Second
	}
	if c.MetadataTimeout == 0 {
		c.MetadataTimeout = 10 * time.Second
	}
	if c.HTTP == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = c.MetadataTimeout
		tr.DisableCompression = true // sizes and hashes are of the file as stored
		c.HTTP = &http.Client{Transport: tr}
	}
	return c
}

// String describes the configuration in one line (never the token).
func (c Config) String() string {
	auth := "no token"
	if c.Token != "" {
		auth = "token set"
	}
	mode := ""
	if c.Offline {
		mode = ", offline"
	}
	return fmt.Sprintf("%s (cache %s, %s%s)", c.Endpoint, c.CacheDir, auth, mode)
}
