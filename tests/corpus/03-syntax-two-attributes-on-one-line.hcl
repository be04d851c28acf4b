cluster "c" {
  provider "local" {}
  pool "m" { role = "master", count = 1 }
}
