variable "agents" {
  default = 2
}
