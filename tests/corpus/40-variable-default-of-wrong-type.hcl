variable "agents" {
  type    = number
  default = "many"
}
cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
}
