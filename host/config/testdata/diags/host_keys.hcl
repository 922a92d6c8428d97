worker {
  id        = "node 7"
  token     = "s3cret"
  state_dir = "state"
  colour    = "blue"
}

metrics {
  listen = ""
}

plugin "audit-file" {
  kind          = "audit_snk"
  path          = "bin/x"
  sha256        = "abc"
  start_timeout = "soon"
}

plugin "audit-file" {
  kind = "audit_sink"
  path = "bin/y"
}

plugin "loader" {
  kind = "model_loader"
  path = "bin/loader"
  user = "no-such-vramward-user"
}

plugin "as-root" {
  kind = "vram_backend"
  path = "bin/vram"
  user = "0"
}

audit {
  require    = "most"
  queue_size = 0
  batch_wait = 10

  sink "a" {
    plugin = "nope"
  }
  sink "b" {
    plugin = "loader"
  }
  sink "a" {
    plugin = "audit-file"
  }
}

loader {
  plugin = "no-such-loader"
}

model "m" {
  path   = "/models/m.gguf"
  device = 1.5
}

verify {
  interval   = "10ms"
  on_failure = "ignore"
}

unknown_block {}
