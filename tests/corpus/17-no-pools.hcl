cluster "c" {
  provider "local" {}
}
