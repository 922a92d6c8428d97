package loader

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/vramward/vramward/sdk/internal/bounded"
	loaderv1 "github.com/vramward/vramward/sdk/proto/loader/v1"
)

// Client is the host's side of one loader plugin. Every failure it returns
// is a *Rejection; transport failures and crashes are ReasonUnavailable.
type Client struct {
	rpc loaderv1.ModelLoaderClient
	log hclog.Logger

	sandbox bounded.SandboxReport
}

// NewClient wraps a connection's ModelLoader client.
func NewClient(rpc loaderv1.ModelLoaderClient, logger hclog.Logger) *Client {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Client{rpc: rpc, log: logger}
}

// Info asks the plugin for its name, version, formats and config schema.
func (c *Client) Info(ctx context.Context) (Info, error) {
	resp, err := c.rpc.Info(ctx, &loaderv1.InfoRequest{})
	if err != nil {
		return Info{}, fromStatus("info", err)
	}
	sch, err := bounded.PluginInfo(resp.GetName(), resp.GetVersion(), resp.GetConfigSchema())
	if err != nil {
		return Info{}, &Rejection{Op: "info", Reason: ReasonUnavailable, Msg: err.Error(), Offset: -1}
	}
	return Info{Name: resp.GetName(), Version: resp.GetVersion(), Schema: sch, Formats: resp.GetFormats()}, nil
}

// Configure sends the decoded config block as JSON.
func (c *Client) Configure(ctx context.Context, configJSON []byte) error {
	resp, err := c.rpc.Configure(ctx, &loaderv1.ConfigureRequest{ConfigJson: configJSON})
	if err != nil {
		return fromStatus("configure", err)
	}
	c.sandbox.Set(resp.GetSandboxed(), resp.GetSandbox())
	return nil
}

// Sandbox says whether the plugin restricted itself after Configure, and
// how (or why not).
func (c *Client) Sandbox() (bool, string) { return c.sandbox.Get() }

// Validate confines, hashes and validates the model at path.
func (c *Client) Validate(ctx context.Context, path, expectedSHA256 string) (*Model, error) {
	resp, err := c.rpc.Validate(ctx, &loaderv1.ValidateRequest{Path: path, ExpectedSha256: expectedSHA256})
	if err != nil {
		return nil, fromStatus("validate", err)
	}
	return &Model{SHA256: resp.GetSha256(), Summary: summaryFromProto(resp.GetSummary())}, nil
}

// Inspect confines and validates the model at path without hashing it.
func (c *Client) Inspect(ctx context.Context, path string) (*Summary, error) {
	resp, err := c.rpc.Inspect(ctx, &loaderv1.InspectRequest{Path: path})
	if err != nil {
		return nil, fromStatus("inspect", err)
	}
	s := summaryFromProto(resp.GetSummary())
	return &s, nil
}
