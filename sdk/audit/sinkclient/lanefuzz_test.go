package sinkclient

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/vramward/vramward/sdk/internal/lane"
	auditv1 "github.com/vramward/vramward/sdk/proto/audit/v1"
)

// FuzzLaneAnswer: whatever a plugin writes back on the lane, the client
// returns an answer only for a whole response frame to its own request,
// and never panics or waits past its deadline.
func FuzzLaneAnswer(f *testing.F) {
	f.Add(lane.Append(nil, 1, lane.Response, []byte{0x08, 0x01}))
	f.Add(lane.Append(nil, 1, lane.Status, []byte{0x08, 0x0e, 0x12, 0x03, 'b', 'a', 'd'}))
	f.Add(lane.Append(nil, 2, lane.Response, nil))
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, answer []byte) {
		// A socket pair, as the launcher makes: the client reads it
		// asleep in the kernel (lane.Answers).
		host, plugin, err := lane.Pair()
		if err != nil {
			t.Fatal(err)
		}
		defer host.Close()
		go func() {
			defer plugin.Close()
			if _, err := lane.NewReader(plugin, 1<<20).Read(); err != nil {
				return
			}
			_, _ = plugin.Write(answer)
		}()
		l := newLaneConn(host)
		if l.answers == nil {
			t.Fatal("the client reads a socket pair through the poller")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, broken, err := l.roundTrip(ctx, &auditv1.EmitBatchRequest{Records: []byte("{}\n")})
		if err == nil {
			fr, rerr := lane.NewReader(bytes.NewReader(answer), maxAnswerBytes).Read()
			if resp == nil || broken || rerr != nil || fr.ID != 1 || fr.Kind != lane.Response {
				t.Fatalf("an answer was taken from %q", answer)
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the round trip ran to its deadline on %q", answer)
		}
	})
}
