package loader

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/vramward/vramward/sdk/sandbox"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/sdk/internal/hexdigest"
	loaderv1 "github.com/vramward/vramward/sdk/proto/loader/v1"
	"github.com/vramward/vramward/sdk/schema"
	"github.com/vramward/vramward/sdk/version"
)

// server turns ModelLoader RPCs into Loader calls. It owns what every
// loader must get right the same way: Configure once and first, the
// standard keys in the schema, a well-formed expected digest, typed errors.
type server struct {
	loaderv1.UnimplementedModelLoaderServer

	loader Loader
	info   Info
	logger hclog.Logger

	mu         sync.RWMutex
	configured bool
	closed     bool
}

func newServer(l Loader, logger hclog.Logger) *server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	info := l.Info()
	if err := checkSchema(info.Schema); err != nil {
		// A broken schema is the plugin author's bug; fail at start-up.
		panic(fmt.Sprintf("model loader %q: %v", info.Name, err))
	}
	return &server{loader: l, info: info, logger: logger}
}

// checkSchema insists on the standard keys with their standard types.
func checkSchema(s schema.Schema) error {
	if err := s.Check(); err != nil {
		return err
	}
	for _, std := range StandardSchema {
		a, ok := s.Lookup(std.Name)
		if !ok || a.Type != std.Type {
			return fmt.Errorf("schema: a loader must accept %q (%s); append to loader.StandardSchema", std.Name, std.Type)
		}
	}
	return nil
}

func (s *server) Info(context.Context, *loaderv1.InfoRequest) (*loaderv1.InfoResponse, error) {
	return &loaderv1.InfoResponse{
		Name: s.info.Name, Version: s.info.Version, ConfigSchema: schema.ToProto(s.info.Schema),
		SdkVersion: version.SDK, Formats: s.info.Formats,
	}, nil
}

func (s *server) Configure(ctx context.Context, req *loaderv1.ConfigureRequest) (*loaderv1.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.configured {
		return nil, (&Rejection{Op: "configure", Reason: ReasonConfigured, Msg: "Configure is called once", Offset: -1}).toStatus()
	}
	vals, err := s.info.Schema.Decode(req.GetConfigJson())
	if err == nil {
		err = s.loader.Configure(ctx, vals)
	}
	if err != nil {
		r := asRejection("configure", ReasonInvalidConfig, err)
		s.logger.Error("configure failed", "error", r)
		return nil, r.toStatus()
	}
	s.configured = true
	sb := sandbox.Apply(s.loader, sandbox.Rules{})
	s.logger.Info("configured", "sandboxed", sb.Enforced, "sandbox", sb.Detail)
	return &loaderv1.ConfigureResponse{Sandboxed: sb.Enforced, Sandbox: sb.Detail}, nil
}

// ready holds the read lock for the call when the loader may be used.
func (s *server) ready(op string) (func(), *Rejection) {
	s.mu.RLock()
	if !s.configured || s.closed {
		s.mu.RUnlock()
		return nil, &Rejection{Op: op, Reason: ReasonNotConfigured, Msg: "Configure was not called, or the loader is closed", Offset: -1}
	}
	return s.mu.RUnlock, nil
}

// NormalizeSHA256 checks a hex SHA-256 and returns it in lower case.
func NormalizeSHA256(hexDigest string) (string, error) { return hexdigest.Normalize(hexDigest) }

func (s *server) Validate(ctx context.Context, req *loaderv1.ValidateRequest) (*loaderv1.ValidateResponse, error) {
	done, rej := s.ready("validate")
	if rej != nil {
		return nil, rej.toStatus()
	}
	defer done()
	if req.GetPath() == "" {
		return nil, s.reject("validate", Reject(ReasonInvalidArgument, "", "empty path"))
	}
	want, err := NormalizeSHA256(req.GetExpectedSha256())
	if err != nil {
		return nil, s.reject("validate", Reject(ReasonInvalidArgument, req.GetPath(), "%v", err))
	}
	m, err := s.loader.Validate(ctx, req.GetPath(), want)
	if err != nil {
		return nil, s.reject("validate", s.classify(ctx, err))
	}
	return &loaderv1.ValidateResponse{Sha256: m.SHA256, Summary: summaryToProto(&m.Summary)}, nil
}

func (s *server) Inspect(ctx context.Context, req *loaderv1.InspectRequest) (*loaderv1.InspectResponse, error) {
	done, rej := s.ready("inspect")
	if rej != nil {
		return nil, rej.toStatus()
	}
	defer done()
	if req.GetPath() == "" {
		return nil, s.reject("inspect", Reject(ReasonInvalidArgument, "", "empty path"))
	}
	sum, err := s.loader.Inspect(ctx, req.GetPath())
	if err != nil {
		return nil, s.reject("inspect", s.classify(ctx, err))
	}
	return &loaderv1.InspectResponse{Summary: summaryToProto(sum)}, nil
}

// classify keeps a loader's own Rejection; anything else is a failure to
// read (or a cancelled call), never a verdict on the model.
func (s *server) classify(ctx context.Context, err error) error {
	var r *Rejection
	if errors.As(err, &r) {
		return err
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Rejection{Reason: ReasonCanceled, Msg: err.Error(), Offset: -1}
	}
	return &Rejection{Reason: ReasonIOError, Msg: err.Error(), Offset: -1}
}

func (s *server) reject(op string, err error) error {
	r := asRejection(op, ReasonIOError, err)
	s.logger.Info("model refused", "op", op, "reason", r.Reason, "path", r.Path, "error", r.Msg)
	return r.toStatus()
}

// close closes the loader once; later calls fail as not configured.
func (s *server) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.loader.Close()
}
