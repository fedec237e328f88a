package bedrock

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func TestForgetCredentials(t *testing.T) {
	credsMu.Lock()
	creds["p1\x00us-east-1"] = aws.NewCredentialsCache(aws.AnonymousCredentials{})
	creds["p10\x00us-east-1"] = aws.NewCredentialsCache(aws.AnonymousCredentials{})
	credsMu.Unlock()
	Translator{}.ForgetCredentials("p1")
	credsMu.Lock()
	defer credsMu.Unlock()
	if _, ok := creds["p1\x00us-east-1"]; ok {
		t.Error("p1 not forgotten")
	}
	if _, ok := creds["p10\x00us-east-1"]; !ok {
		t.Error("p10 forgotten with p1")
	}
	delete(creds, "p10\x00us-east-1")
}
