cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  ssh {
    bastion = env("DCFORM_CORPUS_UNSET")
  }
}
