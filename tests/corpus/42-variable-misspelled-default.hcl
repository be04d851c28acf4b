variable "agents" {
  defualt = 2
}
cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
}
