//! The dcos-terraform modules dcform knows, and what becomes of each of their inputs.

use crate::definition::Role;

/// What a module call contributes to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ModKind {
    /// `dcos-terraform/dcos/aws`: the whole cluster (infrastructure + install).
    Cluster,
    /// `dcos-terraform/infrastructure/aws`: every instance of the cluster, no install.
    Infrastructure,
    /// `masters/aws`, `private-agents/aws`, `public-agents/aws`: one pool.
    Pool(Role),
    /// `dcos-install-remote-exec/null`, `dcos-core/template`: DC/OS install options.
    Install,
    /// Network, firewall, load balancers, IAM, the bootstrap node: nothing dcform needs.
    Support(&'static str),
}

/// Canonical `name/cloud` of a registry, git or GitHub module source, or `None` when it is not a
/// dcos-terraform module.
pub(crate) fn canonical_source(source: &str) -> Option<String> {
    let s = source.trim();
    let s = s.strip_prefix("git::").unwrap_or(s);
    let s = s.split(['?']).next().unwrap_or(s);
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("ssh://")
        .trim_start_matches("git@");
    let s = s.trim_start_matches("registry.terraform.io/");
    // github.com/dcos-terraform/terraform-aws-dcos(.git)(//sub) -> dcos/aws
    for prefix in ["github.com/dcos-terraform/", "github.com:dcos-terraform/"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            let repo = rest
                .split("//")
                .next()
                .unwrap_or(rest)
                .trim_end_matches(".git");
            let repo = repo.strip_prefix("terraform-")?;
            let (cloud, name) = repo.split_once('-')?;
            return Some(format!("{name}/{cloud}"));
        }
    }
    let rest = s.strip_prefix("dcos-terraform/")?;
    let rest = rest.split("//").next().unwrap_or(rest);
    let (name, cloud) = rest.split_once('/')?;
    Some(format!("{name}/{cloud}"))
}

/// The kind of a canonical `name/cloud` source. `Err` names why dcform cannot take it.
pub(crate) fn classify(canonical: &str) -> Result<ModKind, String> {
    let (name, cloud) = canonical.split_once('/').unwrap_or((canonical, ""));
    let install = matches!(
        name,
        "dcos-install-remote-exec" | "dcos-core" | "dcos-install"
    );
    if install {
        return Ok(ModKind::Install);
    }
    if cloud != "aws" {
        return Err(format!(
            "dcform has no {cloud} provider; of the clouds, only AWS definitions convert"
        ));
    }
    Ok(match name {
        "dcos" => ModKind::Cluster,
        "infrastructure" => ModKind::Infrastructure,
        "masters" => ModKind::Pool(Role::Master),
        "private-agents" => ModKind::Pool(Role::Agent),
        "public-agents" => ModKind::Pool(Role::PublicAgent),
        "bootstrap" => ModKind::Support(
            "dcform needs no bootstrap node: it uploads dccore to every node itself",
        ),
        "vpc" | "network" | "security-groups" => ModKind::Support(
            "network and firewall: dcform's aws provider makes the cluster's network itself",
        ),
        "iam" => ModKind::Support("instance profiles: dcform's aws provider has no IAM settings"),
        "lb-dcos" | "elb-dcos" | "lb" | "elb" | "lb-masters" | "lb-public-agents" => {
            ModKind::Support(
                "load balancers: dcform reaches the masters directly (output master_url)",
            )
        }
        "windows-instance" | "windows-agents" => {
            ModKind::Support("Windows agents: dccore agents run on Linux only")
        }
        other => {
            return Err(format!(
                "dcos-terraform module \"{other}\" is not one dcform knows"
            ));
        }
    })
}

/// The sources dcform converts, for error hints.
pub(crate) const KNOWN: &str = "dcos-terraform/dcos/aws, dcos-terraform/infrastructure/aws, \
dcos-terraform/{masters,private-agents,public-agents,bootstrap,vpc,security-groups,iam,lb-dcos}/aws, \
dcos-terraform/dcos-install-remote-exec/null";

/// Why an input of a dcos-terraform module is not carried over. `value` is the literal value when it
/// has one (to tell `dcos_variant = "ee"` from `"open"`).
pub(crate) fn reason(input: &str, value: Option<&str>) -> String {
    const EE: &str = "Enterprise-only";
    let r: &str = match input {
        "dcos_license_key_contents" | "dcos_license_key_file" => {
            "Enterprise-only: a DC/OS Enterprise license file or text; dccore needs no license"
        }
        "dcos_superuser_username" | "dcos_superuser_password_hash" => {
            "Enterprise-only: the DC/OS superuser; a dcform cluster is reached with the operator token written beside its state"
        }
        "dcos_security"
        | "dcos_ca_certificate_path"
        | "dcos_ca_certificate_key_path"
        | "dcos_ca_certificate_chain_path"
        | "dcos_auth_cookie_secure_flag"
        | "dcos_iam_ldap_sync_interval"
        | "dcos_enable_mesos_input_plugin"
        | "dcos_zk_super_credentials"
        | "dcos_zk_master_credentials"
        | "dcos_zk_agent_credentials"
        | "dcos_customer_key"
        | "dcos_bouncer_expiration_auth_token_days"
        | "dcos_audit_logging" => {
            return format!(
                "{EE}: a DC/OS Enterprise security setting; dcform clusters always use TLS and the cluster CA dcform makes"
            );
        }
        "dcos_variant" => {
            return if value == Some("ee") {
                format!(
                    "{EE}: DC/OS Enterprise; dcform installs its own core, dccore, which has one variant"
                )
            } else {
                "dcform installs its own core, dccore, which has one variant".into()
            };
        }
        "dcos_version"
        | "dcos_image_commit"
        | "custom_dcos_download_path"
        | "dcos_download_path"
        | "dcos_install_mode"
        | "dcos_previous_version"
        | "dcos_previous_version_master_index"
        | "dcos_download_url_checksum" => {
            "a DC/OS release to download; dcform installs the dccore bundled with it (core { version = \"bundled\" })"
        }
        "dcos_config" => {
            "extra DC/OS configuration (YAML); dccore settings go in core { config = { ... } }, see provisioner/src/spec/core_config.rs"
        }
        "admin_ips"
        | "public_agents_access_ips"
        | "accepted_internal_networks"
        | "public_agents_additional_ports"
        | "open_admin_router"
        | "open_instance_ssh"
        | "public_agents_allow_registered"
        | "public_agents_allow_dynamic" => {
            "firewall rules: dcform's aws provider has no security-group settings yet"
        }
        "availability_zones"
        | "subnet_range"
        | "aws_subnet_ids"
        | "aws_security_group_ids"
        | "vpc_id" => "network placement: dcform's aws provider makes the cluster's network itself",
        "tags" => "tags: dcform labels what it creates with the cluster name itself",
        "hostname_format" | "name_prefix" | "cluster_name_random_string" => {
            "node names: dcform names nodes <pool>-<index>"
        }
        "aws_key_name" | "ssh_public_key" => {
            "an EC2 key pair: dcform's aws provider makes the key pair of each cluster itself"
        }
        "user_data" => "instance user data: dcform bootstraps nodes over SSH instead",
        "num_bootstrap" => "dcform needs no bootstrap node: it uploads dccore to every node itself",
        "dcos_instance_os" | "masters_os" | "private_agents_os" | "public_agents_os" => {
            "an operating system name: dcform's aws provider takes an AMI id (provider ami), not an OS name"
        }
        "masters_aws_ami" | "private_agents_aws_ami" | "public_agents_aws_ami" => {
            "a per-role AMI: dcform's aws provider has one AMI for all nodes (provider ami)"
        }
        "dcos_resolvers"
        | "dcos_dns_search"
        | "dcos_dns_forward_zones"
        | "dcos_dns_bind_ip_blacklist" => {
            "DNS resolvers are the hosts' own: dccore's service discovery answers for the cluster's names only"
        }
        "dcos_ip_detect_contents"
        | "dcos_ip_detect_public_contents"
        | "dcos_ip_detect_public_filename"
        | "dcos_ip_detect_script"
        | "dcos_fault_domain_detect_contents" => {
            "detect scripts: dcform knows each node's address from its provider"
        }
        "dcos_master_discovery"
        | "dcos_exhibitor_storage_backend"
        | "dcos_exhibitor_address"
        | "dcos_s3_bucket"
        | "dcos_s3_prefix"
        | "dcos_aws_region"
        | "dcos_exhibitor_explicit_keys" => {
            "master discovery: dcform gives every node the masters' addresses itself"
        }
        "dcos_oauth_enabled"
        | "dcos_telemetry_enabled"
        | "dcos_enable_docker_gc"
        | "dcos_calico_network_cidr"
        | "dcos_enable_gpu_isolation"
        | "dcos_gpus_are_scarce"
        | "dcos_overlay_enable"
        | "dcos_overlay_network"
        | "dcos_overlay_mtu"
        | "dcos_use_proxy"
        | "dcos_http_proxy"
        | "dcos_https_proxy"
        | "dcos_no_proxy"
        | "dcos_rexray_config"
        | "dcos_rexray_config_method"
        | "dcos_cluster_docker_credentials"
        | "dcos_cluster_docker_registry_url"
        | "dcos_mesos_container_log_sink"
        | "dcos_log_directory"
        | "dcos_process_timeout"
        | "dcos_docker_remove_delay"
        | "dcos_gc_delay"
        | "dcos_staged_package_storage_uri"
        | "dcos_package_storage_uri"
        | "dcos_enable_mesos_ipv6"
        | "dcos_adminrouter_tls_1_0_enabled" => "a DC/OS option with no dccore meaning",
        "bootstrap_ip"
        | "bootstrap_private_ip"
        | "bootstrap_os_user"
        | "bootstrap_port"
        | "master_ips"
        | "master_private_ips"
        | "masters_os_user"
        | "private_agent_ips"
        | "private_agent_private_ips"
        | "private_agents_os_user"
        | "public_agent_ips"
        | "public_agent_private_ips"
        | "public_agents_os_user" => {
            "machine addresses made by Terraform: dcform creates the machines and knows their addresses"
        }
        "ansible_bundled_container" | "ansible_additional_config" | "ansible_force_run" => {
            "dcos-terraform's Ansible installer: dcform installs over its own SSH engine"
        }
        "additional_windows_private_agent_ips" | "windows_admin_password" => {
            "Windows agents: dccore agents run on Linux only"
        }
        "with_replaced_masters" | "masters_private_ip_list" | "masters_aws_ami_list" => {
            "replacing masters by hand: dcform replaces a node when its definition changes (plan shows -/+)"
        }
        i if i.ends_with("_root_volume_size")
            || i.ends_with("_root_volume_type")
            || i.ends_with("_extra_volumes") =>
        {
            "disk sizes: dcform's aws provider has no volume settings yet"
        }
        i if i.ends_with("_iam_instance_profile") => {
            "instance profiles: dcform's aws provider has no IAM settings"
        }
        i if i.ends_with("_associate_public_ip_address") => {
            "public addresses: dcform's aws provider decides how it reaches its nodes"
        }
        i if i.starts_with("bootstrap_") => {
            "dcform needs no bootstrap node: it uploads dccore to every node itself"
        }
        i if i.starts_with("dcos_") => "a DC/OS option with no dccore meaning",
        _ => "no dcform equivalent",
    };
    r.to_string()
}

/// The login user dcos-terraform's images of an OS use (its `os_user` output).
pub(crate) fn os_user(os: &str) -> Option<&'static str> {
    let family = os.split('_').next().unwrap_or(os);
    Some(match family {
        "centos" => "centos",
        "coreos" | "flatcar" => "core",
        "rhel" => "ec2-user",
        "ubuntu" => "ubuntu",
        "debian" => "admin",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_git_and_github_sources_are_recognised() {
        assert_eq!(
            canonical_source("dcos-terraform/dcos/aws").as_deref(),
            Some("dcos/aws")
        );
        assert_eq!(
            canonical_source("registry.terraform.io/dcos-terraform/private-agents/aws").as_deref(),
            Some("private-agents/aws")
        );
        assert_eq!(
            canonical_source(
                "git::https://github.com/dcos-terraform/terraform-aws-dcos.git?ref=v0.2.0"
            )
            .as_deref(),
            Some("dcos/aws")
        );
        assert_eq!(
            canonical_source("github.com/dcos-terraform/terraform-null-dcos-install-remote-exec")
                .as_deref(),
            Some("dcos-install-remote-exec/null")
        );
        assert_eq!(canonical_source("terraform-aws-modules/vpc/aws"), None);
        assert_eq!(canonical_source("./modules/dcos"), None);
    }

    #[test]
    fn other_clouds_are_refused_with_the_reason() {
        assert!(
            classify("dcos/gcp")
                .unwrap_err()
                .contains("no gcp provider")
        );
        assert_eq!(
            classify("dcos-install-remote-exec/null"),
            Ok(ModKind::Install)
        );
        assert!(matches!(classify("vpc/aws"), Ok(ModKind::Support(_))));
    }

    #[test]
    fn enterprise_inputs_are_named_enterprise_only() {
        assert!(reason("dcos_license_key_contents", None).starts_with("Enterprise-only"));
        assert!(reason("dcos_variant", Some("ee")).starts_with("Enterprise-only"));
        assert!(!reason("dcos_variant", Some("open")).starts_with("Enterprise-only"));
        assert_eq!(os_user("coreos_1855.5.0"), Some("core"));
    }
}
