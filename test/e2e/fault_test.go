package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/openai/openai-go/v3/option"

	"github.com/llmux/llmux/test/fakeprovider"
)

// faultSeq makes request ids unique within the test binary.
var faultSeq atomic.Uint64

// newFaultID returns a fresh, well-formed request id for a fault plan.
func newFaultID() string {
	return "e2e-fault-" + strconv.FormatUint(faultSeq.Add(1), 10)
}

// withFault asks the fake provider for a fault (an x-fake-* header name and its
// value, see fakeprovider's Header* constants). The gateway forwards no
// x-fake-* header, so the fault is registered in the fakes' plan registry
// under the request's x-request-id, which the gateway does forward. Several
// withFault options on one request add up.
func withFault(name, value string) option.RequestOption {
	return option.WithMiddleware(func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		id := req.Header.Get("x-request-id")
		if id == "" {
			id = newFaultID()
			req.Header.Set("x-request-id", id)
		}
		fakeprovider.PlanFor(id, name, value)
		return next(req)
	})
}

// setFakeHeaders sets key, value pairs on a raw request: x-fake-* names go
// to the fakes' plan registry under the request's id, others are set as
// headers.
func setFakeHeaders(req *http.Request, kv ...string) {
	for i := 0; i+1 < len(kv); i += 2 {
		if !strings.HasPrefix(strings.ToLower(kv[i]), "x-fake-") {
			req.Header.Set(kv[i], kv[i+1])
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if strings.HasPrefix(strings.ToLower(kv[i]), "x-fake-") {
			id := req.Header.Get("x-request-id")
			if id == "" {
				id = newFaultID()
				req.Header.Set("x-request-id", id)
			}
			fakeprovider.PlanFor(id, kv[i], kv[i+1])
		}
	}
}
