package witness_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	fwitness "github.com/transparency-dev/formats/witness"
	"golang.org/x/mod/sumdb/note"

	"github.com/vramward/vramward/host/trail"
	"github.com/vramward/vramward/host/witness"
	"github.com/vramward/vramward/sdk/audit"
)

type fixture struct {
	t      *testing.T
	log    *trail.Log
	id     *trail.PrivateKey
	skey   string
	vkey   string
	dir    string
	srv    *httptest.Server
	client *witness.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	l, err := trail.New(trail.Origin("w1"), trail.Limits{CheckpointEvents: 1000, EpochEvents: 1000})
	if err != nil {
		t.Fatal(err)
	}
	id, err := trail.GenerateKey(trail.Origin("w1"))
	if err != nil {
		t.Fatal(err)
	}
	l.SetIdentity(id)
	l.SetWitnesses([]string{"w"})
	skey, vkey, err := witness.GenerateKey("witness.test/w")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, log: l, id: id, skey: skey, vkey: vkey, dir: t.TempDir()}
	f.start()
	return f
}

// start (re)starts the witness on its state dir.
func (f *fixture) start() {
	f.t.Helper()
	if f.srv != nil {
		f.srv.Close()
	}
	idv, err := note.NewVerifier(f.id.VerifierKey())
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := witness.NewServer(witness.ServerOptions{Key: f.skey, StateDir: f.dir, Logs: map[string][]note.Verifier{idv.Name(): {idv}}})
	if err != nil {
		f.t.Fatal(err)
	}
	f.srv = httptest.NewServer(s)
	f.t.Cleanup(f.srv.Close)
	wv, err := witness.NewVerifier(f.vkey)
	if err != nil {
		f.t.Fatal(err)
	}
	f.client = &witness.Client{URL: f.srv.URL, Key: wv}
}

// grow seals n records and a checkpoint, and returns its offer.
func (f *fixture) grow(n int) trail.Offer {
	f.t.Helper()
	for i := 0; i < n; i++ {
		e, _ := audit.New(audit.SealVerified, audit.Actor{}, audit.Str("shard_id", "s"), audit.Uint("gpu_device", uint64(i)))
		f.log.Seal(&e)
	}
	if _, _, err := f.log.Checkpoint(false); err != nil {
		f.t.Fatal(err)
	}
	offers := f.log.TakeOffers()
	if len(offers) != 1 {
		f.t.Fatalf("%d offers", len(offers))
	}
	return offers[0]
}

func (f *fixture) submit(o trail.Offer) ([]byte, error) {
	f.t.Helper()
	p, err := o.Proof()
	if err != nil {
		f.t.Fatal(err)
	}
	return f.client.AddCheckpoint(context.Background(), witness.Request{OldSize: o.OldSize, Proof: p, Checkpoint: o.Checkpoint})
}

func post(t *testing.T, url string, body []byte) (int, string, string) {
	t.Helper()
	resp, err := http.Post(url+"/add-checkpoint", "text/plain", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func TestWitnessCosignsAConsistentLog(t *testing.T) {
	f := newFixture(t)
	var last []byte
	var lastNote []byte
	for i, n := range []int{1, 3, 1, 10, 64, 5} {
		o := f.grow(n)
		sigs, err := f.submit(o)
		if err != nil {
			t.Fatalf("checkpoint %d (size %d from %d): %v", i, o.Size, o.OldSize, err)
		}
		f.log.Cosigned("w", o.Size)
		last, lastNote = sigs, o.Checkpoint
	}
	// transparency-dev's own policy verifier takes the cosignature.
	policy, err := fwitness.ParsePolicy([]byte("witness w " + f.vkey + " " + f.srv.URL + "\nquorum w\n"))
	if err != nil {
		t.Fatal(err)
	}
	cosigned := append(append([]byte(nil), lastNote...), last...)
	if !policy.Satisfied(cosigned) {
		t.Fatalf("formats' witness policy refuses the cosigned checkpoint:\n%s", cosigned)
	}
	if policy.Satisfied(lastNote) {
		t.Fatal("the policy is satisfied without a cosignature")
	}
	// The witness keeps it across a restart, and serves it.
	f.start()
	resp, err := http.Get(f.srv.URL + "/checkpoint?origin=" + trail.Origin("w1"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !policy.Satisfied(got) {
		t.Fatalf("the served checkpoint is not cosigned: %s", got)
	}
	o := f.grow(2)
	if _, err := f.submit(o); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}

func TestWitnessRefusals(t *testing.T) {
	f := newFixture(t)
	o := f.grow(4)
	if _, err := f.submit(o); err != nil {
		t.Fatal(err)
	}
	f.log.Cosigned("w", o.Size)
	next := f.grow(3)
	p, _ := next.Proof()

	// The wrong old size: 409 with the witness's size.
	code, ctype, body := post(t, f.srv.URL, (&witness.Request{OldSize: 1, Checkpoint: next.Checkpoint}).Marshal())
	if code != 409 || ctype != witness.SizeContentType || body != "4\n" {
		t.Fatalf("wrong old size: %d %q %q", code, ctype, body)
	}
	// A proof that does not verify: 422.
	bad := append([][]byte(nil), p...)
	bad[0] = make([]byte, 32)
	if code, _, _ := post(t, f.srv.URL, (&witness.Request{OldSize: 4, Proof: bad, Checkpoint: next.Checkpoint}).Marshal()); code != 422 {
		t.Fatalf("bad proof: %d", code)
	}
	// Old size beyond the checkpoint: 400. Garbage: 400.
	if code, _, _ := post(t, f.srv.URL, (&witness.Request{OldSize: 999, Checkpoint: next.Checkpoint}).Marshal()); code != 400 {
		t.Fatalf("old > size: %d", code)
	}
	if code, _, _ := post(t, f.srv.URL, []byte("hello\n\n")); code != 400 {
		t.Fatalf("garbage: %d", code)
	}
	// Another log's origin: 404. This origin signed by another key: 403.
	other, _ := trail.New(trail.Origin("w2"), trail.Limits{})
	_, c2, _ := other.Checkpoint(false)
	if code, _, _ := post(t, f.srv.URL, (&witness.Request{Checkpoint: c2.Note}).Marshal()); code != 404 {
		t.Fatalf("unknown origin: %d", code)
	}
	stranger, _ := trail.GenerateKey(trail.Origin("w1"))
	forged := trail.Checkpoint{Origin: trail.Origin("w1"), Size: 9, Root: make([]byte, 32)}
	_ = forged.Sign(stranger)
	if code, _, _ := post(t, f.srv.URL, (&witness.Request{OldSize: 4, Checkpoint: forged.Note}).Marshal()); code != 403 {
		t.Fatalf("foreign key: %d", code)
	}
	// A fork at the size it holds: 409. The identity key signs anything,
	// but not consistently with what the witness cosigned.
	fork := trail.Checkpoint{Origin: trail.Origin("w1"), Size: 4, Root: make([]byte, 32)}
	_ = fork.Sign(f.id)
	if code, _, body := post(t, f.srv.URL, (&witness.Request{OldSize: 4, Checkpoint: fork.Note}).Marshal()); code != 409 || body != "4\n" {
		t.Fatalf("fork at the same size: %d %q", code, body)
	}
	// A rollback (a smaller tree) is a 409 too: old must be the latest.
	small := trail.Checkpoint{Origin: trail.Origin("w1"), Size: 2, Root: make([]byte, 32)}
	_ = small.Sign(f.id)
	if code, _, _ := post(t, f.srv.URL, (&witness.Request{OldSize: 2, Checkpoint: small.Note}).Marshal()); code != 409 {
		t.Fatalf("rollback: %d", code)
	}
	// The client maps the answers to typed errors; the good one still goes.
	_, err := f.client.AddCheckpoint(context.Background(), witness.Request{OldSize: 4, Proof: bad, Checkpoint: next.Checkpoint})
	var se *witness.StatusError
	if !errors.As(err, &se) || !se.Inconsistent() {
		t.Fatalf("client: %v", err)
	}
	if _, err := f.submit(next); err != nil {
		t.Fatal(err)
	}
}

// TestLogTakesAWitnessConflict: a witness that lost the host's answer (the
// host crashed after it cosigned) or never saw the log answers 409; the log
// takes its size and the next offer goes through.
func TestLogTakesAWitnessConflict(t *testing.T) {
	f := newFixture(t)
	o := f.grow(5)
	if _, err := f.submit(o); err != nil {
		t.Fatal(err)
	}
	// The host never learnt of the cosignature (it crashed): the next run
	// offers from size 0, the witness names the size it holds, and the log
	// takes it, since it offered that tree.
	st := f.log.State()
	k, _ := trail.LoadKey(st.Origin, f.log.Key().AppendSecret(nil))
	resumed, err := trail.Resume(st, k, trail.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	resumed.SetIdentity(f.id)
	resumed.SetWitnesses([]string{"w"})
	f.log = resumed
	next := f.grow(2)
	if next.OldSize != 0 {
		t.Fatalf("old size %d", next.OldSize)
	}
	_, err = f.submit(next)
	var ce *witness.ConflictError
	if !errors.As(err, &ce) || ce.Size != o.Size {
		t.Fatalf("want a 409 naming %d: %v", o.Size, err)
	}
	if !f.log.Conflict("w", ce.Size, false) {
		t.Fatal("the log did not take a size it had offered")
	}
	if after := f.grow(1); after.OldSize != o.Size {
		t.Fatalf("the next offer is from %d, want %d", after.OldSize, o.Size)
	} else if _, err := f.submit(after); err != nil {
		t.Fatal(err)
	}
	// A witness holding a size this log never offered it is refused.
	if f.log.Conflict("w", 3, false) {
		t.Fatal("a size the log cannot prove from was taken")
	}
}

// FuzzParseRequest: no request body, however hostile, panics the parser,
// and one that parses writes back to the same bytes.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("old 0\n\nvramward/w1\n1\nAAAA\n\n— x y\n"))
	f.Add([]byte("old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n— example.com/behind-the-sofa Az3g\n"))
	f.Add([]byte("old 01\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := witness.ParseRequest(body)
		if err != nil {
			return
		}
		if got := r.Marshal(); string(got) != string(body) {
			t.Fatalf("parsed %q, writes %q", body, got)
		}
	})
}
