cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pool "public_agents" {
    role  = "public_agent"
    count = 1
  }
}
