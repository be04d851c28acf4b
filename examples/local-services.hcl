# examples/local.hcl plus two Marathon services, deployed on the cluster by the same apply:
# one written as HCL attributes, one as Marathon app JSON read from a file.
#   dcform plan examples/local-services.hcl
#   dcform apply examples/local-services.hcl

variable "agents" {
  type        = number
  default     = 2
  description = "Number of private agents"
}

cluster "local-services" {
  provider "local" {}

  core {
    version = "bundled"
    config = {
      agent_ping_timeout = "2s"
    }
  }

  pool "masters" {
    role  = "master"
    count = 1
  }

  pool "agents" {
    role  = "agent"
    count = var.agents
    attributes = {
      rack = "r1"
    }
  }

  pool "public" {
    role  = "public_agent"
    count = 1
  }

  # A framework principal: dcform makes its secret (`dcform output principal_secret_files`); its
  # frameworks may subscribe only with role "analytics" and run tasks only as "nobody".
  principal "analytics" {
    roles = ["analytics"]
    users = ["nobody"]
  }

  # A service in HCL: snake_case attributes for Marathon's fields (id defaults to "/web").
  service "web" {
    cmd       = "python3 -m http.server $PORT0"
    instances = 2
    cpus      = 0.1
    mem       = 64
    port_definitions = [{ port = 0, name = "http" }]
    health_checks = [{
      protocol                 = "HTTP"
      path                     = "/"
      port_index               = 0
      grace_period_seconds     = 30
      interval_seconds         = 10
      max_consecutive_failures = 3
    }]
    upgrade_strategy = { minimum_health_capacity = 0.5 }
    labels           = { example = "local-services" }
  }

  # A service as Marathon app JSON (its own "id", /hello, wins over the block name).
  service "hello" {
    marathon_json = file("hello-service.json")
  }
}
