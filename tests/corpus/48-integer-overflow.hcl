cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pool "agents" {
    role  = "agent"
    count = 9223372036854775807 * 9223372036854775807
  }
}
