package bedrock

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// This file signs Bedrock requests with AWS Signature Version 4, building
// the canonical request and the string to sign directly into one buffer,
// for the only request llmux signs: a POST with an empty query and the
// headers content-type, host, x-amz-content-sha256, x-amz-date and, with
// temporary credentials, x-amz-security-token. The result is byte for
// byte the AWS SDK v4 signer's for the same http.Request (proven in
// sigv4_test.go over generated requests); this saves the SDK's
// net/http.Request, URL and header handling and their garbage.

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	// signedHeaders lists the headers signed without a session token;
	// with one, ";x-amz-security-token" follows.
	signedHeaders = "content-type;host;x-amz-content-sha256;x-amz-date"
	signedToken   = ";x-amz-security-token"
	contentType   = "application/json"
)

// sigv4 is the result of signing one request. Its strings share one
// allocation.
type sigv4 struct {
	authorization string
	date          string // x-amz-date, 20060102T150405Z
	payloadHash   string // x-amz-content-sha256, lower-case hex
}

// signV4 signs a POST of body to https://host/path at now for service and
// region with creds, as the SDK signer does with the headers listed above.
// host and path are what url.Parse("https://"+host+path) reads; an error
// is returned when it fails.
func signV4(creds *aws.Credentials, host, path string, body []byte, service, region string, now time.Time) (sigv4, error) {
	canonHost, canonPath, ok := fastCanon(host, path)
	var canonQuery string
	if !ok {
		var err error
		if canonHost, canonPath, canonQuery, err = slowCanon(host, path); err != nil {
			return sigv4{}, err
		}
	}
	now = now.UTC()
	var date [16]byte
	appendAmzDate(date[:0], now)
	day := date[:8]

	var sum [sha256.Size]byte
	sum = sha256.Sum256(body)
	var hash [2 * sha256.Size]byte
	hex.Encode(hash[:], sum[:])

	token := creds.SessionToken
	// The canonical request.
	var stack [1024]byte
	cr := stack[:0]
	cr = append(cr, "POST\n"...)
	cr = appendEscapedPath(cr, canonPath)
	cr = append(cr, '\n')
	cr = append(cr, canonQuery...)
	cr = append(cr, "\ncontent-type:"+contentType+"\nhost:"...)
	cr = appendStripSpaces(cr, canonHost)
	cr = append(cr, "\nx-amz-content-sha256:"...)
	cr = append(cr, hash[:]...)
	cr = append(cr, "\nx-amz-date:"...)
	cr = append(cr, date[:]...)
	cr = append(cr, '\n')
	if token != "" {
		cr = append(cr, "x-amz-security-token:"...)
		cr = appendHeaderValue(cr, token)
		cr = append(cr, '\n')
	}
	cr = append(cr, "\n"+signedHeaders...)
	if token != "" {
		cr = append(cr, signedToken...)
	}
	cr = append(cr, '\n')
	cr = append(cr, hash[:]...)
	crSum := sha256.Sum256(cr)

	// The string to sign, in the same buffer.
	sts := cr[:0]
	sts = append(sts, sigAlgorithm+"\n"...)
	sts = append(sts, date[:]...)
	sts = append(sts, '\n')
	scope := len(sts)
	sts = append(sts, day...)
	sts = append(sts, '/')
	sts = append(sts, region...)
	sts = append(sts, '/')
	sts = append(sts, service...)
	sts = append(sts, "/aws4_request\n"...)
	scopeEnd := len(sts) - 1
	sts = hex.AppendEncode(sts, crSum[:])

	key := signingKey(creds, service, region, now, day)
	sig := hmacSHA256(&key, sts)

	// One allocation for the three header values.
	var b strings.Builder
	b.Grow(len(hash) + len(date) + len(sigAlgorithm) + len(" Credential=") + len(creds.AccessKeyID) + 1 + (scopeEnd - scope) +
		len(", SignedHeaders=") + len(signedHeaders) + len(signedToken) + len(", Signature=") + 2*sha256.Size)
	b.Write(hash[:])
	b.Write(date[:])
	b.WriteString(sigAlgorithm + " Credential=")
	b.WriteString(creds.AccessKeyID)
	b.WriteByte('/')
	b.Write(sts[scope:scopeEnd])
	b.WriteString(", SignedHeaders=" + signedHeaders)
	if token != "" {
		b.WriteString(signedToken)
	}
	b.WriteString(", Signature=")
	var sigHex [2 * sha256.Size]byte
	hex.Encode(sigHex[:], sig[:])
	b.Write(sigHex[:])
	s := b.String()
	return sigv4{
		payloadHash:   s[:len(hash)],
		date:          s[len(hash) : len(hash)+len(date)],
		authorization: s[len(hash)+len(date):],
	}, nil
}

// appendAmzDate appends t (UTC) as 20060102T150405Z.
func appendAmzDate(b []byte, t time.Time) []byte {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	if y < 0 || y > 9999 {
		return t.AppendFormat(b, "20060102T150405Z")
	}
	return append(b,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10),
		byte('0'+int(mo)/10), byte('0'+int(mo)%10), byte('0'+d/10), byte('0'+d%10),
		'T',
		byte('0'+h/10), byte('0'+h%10), byte('0'+mi/10), byte('0'+mi%10), byte('0'+s/10), byte('0'+s%10),
		'Z')
}

// unreserved reports the RFC 3986 unreserved characters, which SigV4's
// canonical URI leaves as they are.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// fastCanon returns the signed host and the escaped path of
// https://host+path without parsing a URL, when both are plain: host of
// letters, digits, '-' and '.', with an optional numeric port, and a path
// starting with '/' of unreserved characters, '/' and %XX escapes. For
// those, url.Parse's EscapedPath is path itself. The SDK drops the
// scheme's default port (443) from the signed host.
func fastCanon(host, path string) (string, string, bool) {
	if host == "" || path == "" || path[0] != '/' {
		return "", "", false
	}
	name := host
	if i := strings.IndexByte(host, ':'); i >= 0 {
		name = host[:i]
		port := host[i+1:]
		if port == "" {
			return "", "", false
		}
		for j := 0; j < len(port); j++ {
			if port[j] < '0' || port[j] > '9' {
				return "", "", false
			}
		}
		if port == "443" {
			host = name
		}
	}
	if name == "" {
		return "", "", false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return "", "", false
		}
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case unreserved(c) || c == '/':
		case c == '%' && i+2 < len(path) && isHex(path[i+1]) && isHex(path[i+2]):
			i += 2
		default:
			return "", "", false
		}
	}
	return host, path, true
}

// slowCanon is fastCanon for any host and path, through url.Parse as the
// SDK signer sees the request; it also returns the canonical query string
// (a '?' in a configured base path or host starts a query).
func slowCanon(host, path string) (h, p, query string, err error) {
	u, err := url.Parse("https://" + host + path)
	if err != nil {
		return "", "", "", fmt.Errorf("bedrock: request URL: %w", err)
	}
	h = u.Host
	if i := strings.IndexByte(h, ':'); i >= 0 {
		// The SDK's SanitizeHostForHeader: drop a default port.
		port := h[i+1:]
		if j := strings.Index(h, "]:"); j >= 0 {
			port = h[j+2:]
		} else if strings.Contains(h, "]") {
			port = ""
		}
		if port == "443" {
			if j := strings.IndexByte(h, ']'); j >= 0 {
				h = strings.TrimPrefix(h[:j], "[")
			} else {
				h = h[:i]
			}
		}
	}
	p = u.EscapedPath()
	if u.Opaque != "" {
		// Not reached for an https URL with a host, kept as the SDK
		// reads an opaque URL.
		o := u.Opaque
		if i := strings.IndexByte(o, '?'); i >= 0 {
			o = o[:i]
		}
		o = strings.TrimPrefix(o, "//")
		p = ""
		if i := strings.IndexByte(o, '/'); i >= 0 {
			p = o[i:]
		}
	}
	if p == "" {
		p = "/"
	}
	return h, p, canonicalQuery(u.Query()), nil
}

// canonicalQuery is SigV4's canonical query string: each name and value
// escaped (space as %20), the pairs sorted by name, then by value.
func canonicalQuery(q url.Values) string {
	type pair struct{ k, v string }
	var ps []pair
	esc := func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }
	for k, vs := range q {
		for _, v := range vs {
			ps = append(ps, pair{esc(k), esc(v)})
		}
	}
	slices.SortFunc(ps, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// appendEscapedPath appends p with every byte but the unreserved ones and
// '/' percent-encoded (so an escape in p is encoded again, as SigV4 wants
// for every service but S3).
func appendEscapedPath(b []byte, p string) []byte {
	const hexd = "0123456789ABCDEF"
	for i := 0; i < len(p); i++ {
		c := p[i]
		if unreserved(c) || c == '/' {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexd[c>>4], hexd[c&15])
	}
	return b
}

// appendStripSpaces appends s without its leading and trailing spaces and
// with each run of spaces inside it reduced to one.
func appendStripSpaces(b []byte, s string) []byte {
	s = strings.Trim(s, " ")
	space := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b = append(b, c)
	}
	return b
}

// appendHeaderValue appends a canonical header value: spaces stripped as
// appendStripSpaces does, then leading and trailing white space trimmed.
func appendHeaderValue(b []byte, v string) []byte {
	n := len(b)
	b = appendStripSpaces(b, v)
	t := bytes.TrimSpace(b[n:])
	if len(t) == len(b)-n {
		return b
	}
	return append(b[:n], t...)
}

// hmacSHA256 returns HMAC-SHA256(key, msg) for a 32-byte key.
func hmacSHA256(key *[sha256.Size]byte, msg []byte) [sha256.Size]byte {
	return hmacAny(key[:], msg)
}

// keyID names a derived signing key in keyCache.
type keyID struct {
	region, service, accessKey string
}

// derived is a signing key for one secret and one day.
type derived struct {
	secret string
	day    [8]byte
	key    [sha256.Size]byte
}

// keyCache holds the derived signing keys (four HMACs each), per region,
// service and access key; an entry is replaced when its secret or day
// changes. It is cleared when it grows past maxKeys (rotated credentials).
var keyCache struct {
	sync.RWMutex
	m map[keyID]*derived
}

const maxKeys = 256

// signingKey returns the SigV4 signing key of creds for day (20060102),
// region and service.
func signingKey(creds *aws.Credentials, service, region string, now time.Time, day []byte) [sha256.Size]byte {
	id := keyID{region: region, service: service, accessKey: creds.AccessKeyID}
	keyCache.RLock()
	d := keyCache.m[id]
	keyCache.RUnlock()
	if d != nil && d.secret == creds.SecretAccessKey && string(d.day[:]) == string(day) {
		return d.key
	}
	d = &derived{secret: creds.SecretAccessKey}
	copy(d.day[:], day)
	d.key = deriveKey(creds.SecretAccessKey, day, region, service)
	keyCache.Lock()
	if keyCache.m == nil || len(keyCache.m) >= maxKeys {
		keyCache.m = make(map[keyID]*derived)
	}
	keyCache.m[id] = d
	keyCache.Unlock()
	return d.key
}

// deriveKey derives a SigV4 signing key: HMAC chained over the day, the
// region, the service and "aws4_request", keyed first by "AWS4"+secret.
func deriveKey(secret string, day []byte, region, service string) [sha256.Size]byte {
	k := hmacAny([]byte("AWS4"+secret), day)
	k = hmacSHA256(&k, []byte(region))
	k = hmacSHA256(&k, []byte(service))
	return hmacSHA256(&k, []byte("aws4_request"))
}

// hmacAny is HMAC-SHA256 for a key of any length, without crypto/hmac's
// allocations: each pad and its message are hashed from one stack buffer
// when they fit in it (they do for everything signV4 signs).
func hmacAny(key, msg []byte) [sha256.Size]byte {
	if len(key) > sha256.BlockSize {
		s := sha256.Sum256(key)
		key = s[:]
	}
	var k [sha256.BlockSize]byte
	copy(k[:], key)
	var buf [sha256.BlockSize + 512]byte
	var in []byte
	if len(msg) <= len(buf)-sha256.BlockSize {
		in = buf[:sha256.BlockSize+len(msg)]
	} else {
		in = make([]byte, sha256.BlockSize+len(msg))
	}
	for i := range k {
		in[i] = k[i] ^ 0x36
	}
	copy(in[sha256.BlockSize:], msg)
	inner := sha256.Sum256(in)
	out := buf[:sha256.BlockSize+sha256.Size]
	for i := range k {
		out[i] = k[i] ^ 0x5c
	}
	copy(out[sha256.BlockSize:], inner[:])
	return sha256.Sum256(out)
}
