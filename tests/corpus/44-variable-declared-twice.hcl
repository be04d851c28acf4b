variable "a" {
  default = 1
}
variable "a" {
  default = 2
}
cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
}
