# One vramward host on every GPU node: a system job whose task asks for one
# NVIDIA GPU (so it is placed on nodes the nvidia device plugin fingerprints),
# with the binaries from an artifact, the config from a template, the worker
# token from Nomad variables (nomad/jobs/vramward, key "token") as a 0400
# file, the state and trail on host volumes of the node, and the metrics as a
# Nomad service checked on /readyz.
job "vramward" {
  type        = "system"
  datacenters = ["*"]

  update {
    max_parallel = 1
  }

  group "vramward" {
    network {
      port "metrics" {
        static = 9464
      }
    }

    # client { host_volume "vramward-state" { path = "/var/lib/vramward" } } on
    # each node, and the same for the trail and the models.
    volume "state" {
      type   = "host"
      source = "vramward-state"
    }
    volume "trail" {
      type   = "host"
      source = "vramward-trail"
    }
    volume "models" {
      type      = "host"
      source    = "models"
      read_only = true
    }

    service {
      name     = "vramward-metrics"
      port     = "metrics"
      provider = "nomad"
      check {
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "vramward" {
      driver = "exec"

      config {
        command = "local/vramward/vramward"
        args    = ["run", "-config", "local/vramward.hcl"]
      }

      artifact {
        source      = "https://artifacts.internal/vramward/0.1.0/vramward_linux_amd64.tar.gz"
        destination = "local/vramward"
      }

      template {
        destination = "secrets/token"
        perms       = "0400"
        change_mode = "restart"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/vramward" }}{{ .token }}{{ end }}
        EOT
      }

      template {
        destination = "local/vramward.hcl"
        change_mode = "restart"
        data        = <<-EOT
          worker {
            id         = "{{ env "node.unique.name" }}"
            token_file = "{{ env "NOMAD_SECRETS_DIR" }}/token"
            state_dir  = "/var/lib/vramward"
          }
          metrics {
            listen = "0.0.0.0:{{ env "NOMAD_PORT_metrics" }}"
          }
          plugin "audit-file" {
            kind = "audit_sink"
            path = "{{ env "NOMAD_TASK_DIR" }}/vramward/vramward-plugin-audit-file"
          }
          plugin "loader-gguf" {
            kind = "model_loader"
            path = "{{ env "NOMAD_TASK_DIR" }}/vramward/vramward-plugin-loader-gguf"
          }
          plugin "vram-cuda" {
            kind = "vram_backend"
            path = "{{ env "NOMAD_TASK_DIR" }}/vramward/vramward-plugin-vram-cuda"
          }
          audit {
            sink "local" {
              plugin = "audit-file"
              config {
                path = "/var/log/vramward/audit.log"
              }
            }
          }
          loader {
            plugin = "loader-gguf"
            config {
              allowed_roots = ["/srv/models"]
            }
          }
          vram {
            plugin          = "vram-cuda"
            require_backend = "cuda"
            config {
              backend = "cuda"
            }
          }
        EOT
      }

      volume_mount {
        volume      = "state"
        destination = "/var/lib/vramward"
      }
      volume_mount {
        volume      = "trail"
        destination = "/var/log/vramward"
      }
      volume_mount {
        volume      = "models"
        destination = "/srv/models"
        read_only   = true
      }

      # SIGTERM: the host drains, flushes and closes every sink within
      # audit.shutdown_timeout (10 s).
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 500
        memory = 512
        device "nvidia/gpu" {
          count = 1
        }
      }
    }
  }
}
