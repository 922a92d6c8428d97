worker {
  id        = "node-7"
  token_env = "T"
  state_dir = "state"
}

plugin "audit-file" {
  kind = "audit_sink"
  path = "bin/vramward-plugin-audit-file"
}

audit {
  sink "wrong-key" {
    plugin = "audit-file"
    config {
      path      = "/var/log/vramward/audit.log"
      max_byte  = 100
    }
  }
  sink "wrong-type" {
    plugin = "audit-file"
    config {
      path           = "/var/log/vramward/audit.log"
      max_bytes      = "lots"
      flush_interval = "whenever"
      max_files      = true
    }
  }
  sink "missing" {
    plugin = "audit-file"
  }
}

plugin "loader-gguf" {
  kind = "model_loader"
  path = "bin/vramward-plugin-loader-gguf"
}

loader {
  plugin = "loader-gguf"
  config {
    allowed_roots  = "/models"
    max_file_byte  = 1
  }
}
