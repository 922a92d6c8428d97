# vramward on a GPU node, as deploy/vramward.service runs it
# (/etc/vramward/vramward.hcl). `vramward validate -config` checks it.

worker {
  id               = "gpu-node-1"     # this node's id in the fleet inventory
  token_credential = "worker-token"   # LoadCredential= in the unit
  state_dir        = "/var/lib/vramward"
}

metrics {
  listen = "127.0.0.1:9464"
}

# Pin every plugin: sha256sum /usr/local/lib/vramward/vramward-plugin-*
plugin "audit-file" {
  kind = "audit_sink"
  path = "/usr/local/lib/vramward/vramward-plugin-audit-file"
  # sha256 = "..."
}

plugin "audit-syslog" {
  kind = "audit_sink"
  path = "/usr/local/lib/vramward/vramward-plugin-audit-syslog"
  # TCP (tcp, tls, relp) to the receiver; the host's sandbox refuses it otherwise.
  network = true
  # sha256 = "..."
}

plugin "loader-gguf" {
  kind = "model_loader"
  path = "/usr/local/lib/vramward/vramward-plugin-loader-gguf"
  # sha256 = "..."
}

plugin "vram-cuda" {
  kind = "vram_backend"
  path = "/usr/local/lib/vramward/vramward-plugin-vram-cuda"
  # sha256 = "..."
}

audit {
  require = "all"

  sink "local-file" {
    plugin = "audit-file"
    config {
      path = "/var/log/vramward/audit.log"
    }
  }

  # A copy off the node, acknowledged by the receiver.
  sink "siem" {
    plugin = "audit-syslog"
    config {
      transport = "relp"
      address   = "127.0.0.1:2514" # a local relay; see deploy/rsyslog-vramward.conf
    }
  }
}

loader {
  plugin = "loader-gguf"
  config {
    allowed_roots = ["/srv/models"]
  }
}

model "llama" {
  path   = "/srv/models/llama-3-8b.Q4_K_M.gguf"
  sha256 = "0000000000000000000000000000000000000000000000000000000000000000" # the hub's published SHA-256
}

vram {
  plugin          = "vram-cuda"
  require_backend = "cuda" # an emulated (host-memory) seal is refused
  config {
    backend = "cuda"
  }
}

verify {
  interval = "5m"
}
