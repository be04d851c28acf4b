cluster "c" {
  provider "local" {}
