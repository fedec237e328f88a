package bedrock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// sdkSign signs the request sign builds with the AWS SDK's v4 signer, as
// llmux did before signV4: it returns the authorization and x-amz-date
// headers, or ok false when the URL does not parse.
func sdkSign(t testing.TB, creds aws.Credentials, host, path string, body []byte, region string, now time.Time) (auth, date string, ok bool) {
	t.Helper()
	u, err := url.Parse("https://" + host + path)
	if err != nil {
		return "", "", false
	}
	sum := sha256Hex(body)
	hr := &http.Request{Method: http.MethodPost, URL: u, Host: u.Host, Header: http.Header{}}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Amz-Content-Sha256", sum)
	// A signer per call: the SDK's derived-key cache does not compare
	// secrets, and the generated cases reuse access keys with new ones.
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, hr, sum, SigningService, region, now); err != nil {
		t.Fatalf("SDK signer: %v", err)
	}
	return hr.Header.Get("Authorization"), hr.Header.Get("X-Amz-Date"), true
}

// checkSameAsSDK signs one request both ways and fails on any difference.
func checkSameAsSDK(t testing.TB, creds aws.Credentials, host, path string, body []byte, region string, now time.Time) {
	t.Helper()
	wantAuth, wantDate, wantOK := sdkSign(t, creds, host, path, body, region, now)
	got, err := signV4(&creds, host, path, body, SigningService, region, now)
	if (err == nil) != wantOK {
		t.Fatalf("host %q path %q: error %v, SDK's URL parsed: %v", host, path, err, wantOK)
	}
	if !wantOK {
		return
	}
	if got.authorization != wantAuth || got.date != wantDate || got.payloadHash != sha256Hex(body) {
		t.Fatalf("host %q path %q region %q creds %+v time %v:\ngot  %s %s %s\nwant %s %s",
			host, path, region, creds, now, got.authorization, got.date, got.payloadHash, wantAuth, wantDate)
	}
}

// TestSignV4Table: hand-picked requests, the ordinary ones and every
// shape that takes the URL-parsing path.
func TestSignV4Table(t *testing.T) {
	now := time.Date(2025, 3, 10, 1, 31, 23, 0, time.UTC)
	model := "/model/" + escapeModel("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0") + "/converse"
	tests := []struct {
		name, host, path string
		token            string
	}{
		{"regional", "bedrock-runtime.us-east-1.amazonaws.com", "/model/anthropic.claude-v2/converse", ""},
		{"session token", "bedrock-runtime.us-east-1.amazonaws.com", model, "tok"},
		{"token with spaces", "bedrock-runtime.us-east-1.amazonaws.com", model, "  a  b \t"},
		{"default port", "bedrock-runtime.us-east-1.amazonaws.com:443", model, ""},
		{"other port", "127.0.0.1:8443", model, ""},
		{"upper-case host", "Bedrock-Runtime.US-EAST-1.amazonaws.com", model, ""},
		{"IPv6", "[::1]:443", model, ""},
		{"IPv6 other port", "[::1]:9000", model, ""},
		{"empty port", "example.com:", model, ""},
		{"base path", "proxy.example.com", "/a%2Fb/c d/é/x:y@z+!" + model, ""},
		{"lower-case escape", "proxy.example.com", "/%3a%2f/model", ""},
		{"bad escape", "proxy.example.com", "/%zz", ""},
		{"no leading slash", "proxy.example.com", "v1" + model, ""},
		{"query", "proxy.example.com", "/p?x=1", ""},
		{"fragment", "proxy.example.com", "/p#x", ""},
		{"space in host", "proxy example.com", "/p", ""},
		{"empty host", "", "/p", ""},
		{"empty path", "proxy.example.com", "", ""},
		{"underscore host", "proxy_1.example.com", "/p", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds := aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: tt.token}
			checkSameAsSDK(t, creds, tt.host, tt.path, []byte(`{"messages":[]}`), "us-east-1", now)
		})
	}
}

// TestSignV4Generated: thousands of generated requests (hosts, base
// paths, model ids with any byte, regions, bodies, credentials with and
// without session tokens, long secrets, times across days and years),
// signed the same as by the SDK. Access keys repeat with new secrets and
// days, so signing keys are taken from the cache and replaced.
func TestSignV4Generated(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 4))
	n := 4000
	if testing.Short() {
		n = 500
	}
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	randStr := func(alphabet string, max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	const plain = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
	const anyASCII = plain + ":/?#[]@!$&'()*+,;=% \t\"<>\\^`{|}"
	randAny := func(max int) string {
		if rng.IntN(4) == 0 {
			b := make([]byte, rng.IntN(max+1))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			return string(b)
		}
		return randStr(anyASCII, max)
	}
	for i := range n {
		host := pick(
			"bedrock-runtime."+pick("us-east-1", "eu-west-3", "ap-south-1")+".amazonaws.com",
			"bedrock-runtime-fips.us-west-2.amazonaws.com"+pick("", ":443", ":80", ":8443", ":"),
			"127.0.0.1:"+randStr("0123456789", 5),
			randStr(plain, 20),
			randStr(anyASCII, 12),
			"[::1]"+pick("", ":443", ":9"),
		)
		base := pick("", "", "/", "/proxy", "/proxy/", randStr(plain+"/", 12), "/"+randAny(10))
		model := pick("anthropic.claude-3-haiku-20240307-v1:0", "us.meta.llama3-2-1b-instruct-v1:0",
			"arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc", randAny(30))
		op := pick("/converse", "/converse-stream", "/invoke")
		path := strings.TrimSuffix(base, "/") + "/model/" + escapeModel(model) + op
		if rng.IntN(20) == 0 {
			path = randAny(20)
		}
		creds := aws.Credentials{
			AccessKeyID:     pick("AKIDEXAMPLE", "ASIA0000", randStr(plain, 20)),
			SecretAccessKey: pick("secret", randStr(plain+"/+", 40), randStr(plain, 100)),
		}
		if rng.IntN(2) == 0 {
			creds.SessionToken = pick("FwoGZXIvYXdzEJr//////////wEaDK", randStr(plain+"/+=", 300), randStr(" \tab", 8))
		}
		region := pick("us-east-1", "eu-central-1", randStr(plain, 15))
		body := []byte(randAny(200))
		now := time.Date(pick2(rng, 1999, 2025, 2026, 9999), time.Month(1+rng.IntN(12)), 1+rng.IntN(31), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1e9), time.UTC)
		if i%7 == 0 {
			now = now.In(time.FixedZone("x", 3600*(rng.IntN(27)-12)))
		}
		checkSameAsSDK(t, creds, host, path, body, region, now)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func pick2(rng *rand.Rand, v ...int) int { return v[rng.IntN(len(v))] }

// TestSignV4KeyCache: a new secret for the same access key, region and
// day, or a new day, derives a new key; the cache stays bounded.
func TestSignV4KeyCache(t *testing.T) {
	now := time.Date(2025, 3, 10, 23, 59, 59, 0, time.UTC)
	for _, c := range []struct {
		secret string
		at     time.Time
	}{{"a", now}, {"b", now}, {"a", now}, {"a", now.Add(time.Second)}, {"a", now}} {
		checkSameAsSDK(t, aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: c.secret}, "h.example.com", "/p", nil, "us-east-1", c.at)
	}
	for i := range 2 * maxKeys {
		creds := aws.Credentials{AccessKeyID: "AKID" + strings.Repeat("x", i), SecretAccessKey: "s"}
		if _, err := signV4(&creds, "h", "/p", nil, SigningService, "r", now); err != nil {
			t.Fatal(err)
		}
	}
	keyCache.RLock()
	n := len(keyCache.m)
	keyCache.RUnlock()
	if n > maxKeys {
		t.Fatalf("%d cached keys, bound %d", n, maxKeys)
	}
}

// FuzzSignV4: any host, path, region, credentials, body and time sign as
// the SDK signs them (or fail exactly when the SDK's URL does not parse).
func FuzzSignV4(f *testing.F) {
	f.Add("bedrock-runtime.us-east-1.amazonaws.com", "/model/anthropic.claude-v2%3A1/converse", "us-east-1", "AKID", "secret", "", []byte(`{}`), int64(1741570283))
	f.Add("[::1]:443", "/a b/%2f", "r", "AKID", strings.Repeat("s", 80), " tok  en ", []byte(nil), int64(0))
	f.Add("h:443", "v1/x", "", "", "", "\t", []byte("x"), int64(-62135596800))
	f.Fuzz(func(t *testing.T, host, path, region, akid, secret, token string, body []byte, unix int64) {
		if unix < -62135596800 || unix > 253402300799 { // years 1–9999
			unix %= 253402300799
			if unix < 0 {
				unix = -unix
			}
		}
		creds := aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: token}
		checkSameAsSDK(t, creds, host, path, body, region, time.Unix(unix, 0))
	})
}

// BenchmarkSign: signing the benchmark exchange's request, directly and
// through the SDK signer as before.
func BenchmarkSign(b *testing.B) {
	body := []byte(strings.Repeat(`{"role":"user","content":[{"text":"hello"}]},`, 25))
	creds := testCreds
	host := "bedrock-runtime.us-east-1.amazonaws.com"
	path := "/model/" + escapeModel("anthropic.claude-3-haiku-20240307-v1:0") + "/converse"
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := signV4(&creds, host, path, body, SigningService, "us-east-1", signTime); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sdk", func(b *testing.B) {
		b.ReportAllocs()
		s := v4.NewSigner()
		for b.Loop() {
			u, _ := url.Parse("https://" + host + path)
			hr := &http.Request{Method: http.MethodPost, URL: u, Host: u.Host, Header: http.Header{}}
			hash := sha256Hex(body)
			hr.Header.Set("Content-Type", "application/json")
			hr.Header.Set("X-Amz-Content-Sha256", hash)
			if err := s.SignHTTP(context.Background(), creds, hr, hash, SigningService, "us-east-1", signTime); err != nil {
				b.Fatal(err)
			}
		}
	})
}
