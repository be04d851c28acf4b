cluster "demo" {
  provider "aws" {
    ami           = "debian-12"
    admin_cidrs   = ["203.0.113.7"]
    extra_volumes = [0]
  }

  pool "masters" {
    role  = "master"
    count = 1
  }
}
