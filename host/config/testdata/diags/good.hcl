worker {
  id         = "node-7"
  token_env  = "VRAMWARD_WORKER_TOKEN"
  state_dir  = "state"
}

metrics {
  listen = "127.0.0.1:0"
}

plugin "audit-file" {
  kind = "audit_sink"
  path = "../bin/vramward-plugin-audit-file"
}

audit {
  require    = "any"
  batch_wait = "5ms"

  sink "local" {
    plugin = "audit-file"
    config {
      path           = abspath("var/audit.log")
      flush_interval = "2s"
    }
  }
}

plugin "loader-gguf" {
  kind = "model_loader"
  path = "../bin/vramward-plugin-loader-gguf"
}

loader {
  plugin = "loader-gguf"
  config {
    allowed_roots = [abspath("models")]
  }
}

model "llama" {
  path   = "/models/llama.gguf"
  sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
}

verify {
  interval = "30s"
}
