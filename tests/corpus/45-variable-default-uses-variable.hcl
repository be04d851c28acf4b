variable "a" {
  default = 1
}
variable "b" {
  default = var.a
}
cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
}
