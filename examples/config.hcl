# vramward example: runs on any machine, no GPU needed (`make run`).
# Relative paths are resolved against this file's directory.

worker {
  id         = "example-node"
  token_file = "../var/worker.token" # made by examples/run.sh; never put a token here
  state_dir  = "../var/state"         # the log's state, spools, audit.pub (public key), checkpoint
}

metrics {
  listen = "127.0.0.1:9464"
}

plugin "audit-file" {
  kind = "audit_sink"
  path = "../bin/vramward-plugin-audit-file"
  # sha256 = "..."  # pin the binary in production: `sha256sum bin/vramward-plugin-audit-file`
}

plugin "loader-gguf" {
  kind = "model_loader"
  path = "../bin/vramward-plugin-loader-gguf"
}

plugin "vram-cuda" {
  kind = "vram_backend"
  path = "../bin/vramward-plugin-vram-cuda"
}

audit {
  require          = "all" # a CRITICAL event must be durable on every sink
  shutdown_timeout = "10s"

  sink "local-file" {
    plugin = "audit-file"
    config {
      path           = abspath("../var/audit/audit.log")
      max_bytes      = 104857600
      max_files      = 10
      flush_interval = "1s"
    }
  }
}

# The loader confines, hashes and validates every model at start; the trail
# records ModelLoaded (or why a model was refused).
loader {
  plugin = "loader-gguf"
  config {
    allowed_roots = [abspath("models")]
  }
}

# A tiny spec-exact GGUF file (sdk/gguftest's Small model), so that the
# example runs on any machine.
model "tiny" {
  path   = "models/tiny.gguf"
  sha256 = "3b5d8c83f41adc60f4e50d2743a14bc5a315d9436bb8ed883dc4bcc371d83b46"
}

# The VRAM backend loads, seals and keeps verifying each model. "emulated"
# keeps shards in host memory so the example runs without a GPU; every seal,
# event and metric says "emulated". Production configs use backend = "cuda".
vram {
  plugin = "vram-cuda"
  config {
    backend               = "emulated"
    emulated_device_bytes = 1073741824
  }
}

verify {
  interval = "10s"
}
