cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  service "web" {
    marathon_json = "{\"cmd\": \"sleep 1\", \"cpus\": -0.5}"
  }
  service "api" {
    marathon_json = "{\"cmd\": \"sleep 1\",}"
  }
  service "both" {
    marathon_json = "{\"cmd\": \"sleep 1\"}"
    instances     = 2
  }
  service "dup" {
    id  = "/api2"
    cmd = "sleep 1"
  }
  service "dup2" {
    id  = "api2"
    cmd = "sleep 1"
  }
}
